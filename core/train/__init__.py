"""Training, read in this order (about 1,500 lines):

  training     one run's two phases in one screen: decode and split, build, fit the head, fine-tune, evaluate
  trainer      the fits themselves: the head on cached features, the classifier on images, the test split
  batches      batch sources: cached features, image batches from the decoded cache, extraction batches
  callbacks    the Keras callbacks: metrics to the run store, the best weights, the stop flag, progress bars
  schedules    learning-rate schedules of a phase (constant, cosine, plateau)
  features     pooled backbone features, computed once per (dataset, size, backbone weights, view) and cached
  distribute   data parallel over several devices
  jobs         a training run as a background job: find or create the run, wait for the device, train

The job layer itself (spawn, liveness, stop flag, log) is core.processes; a run's split is core.runs.split.
"""
