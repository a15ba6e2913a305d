"""Teaching notes: short explanations shown in place when "Explain this step" is on (sidebar).

Instructors use Flora in class; each note says why a step is done the way it is, in plain words.
The toggle is remembered in the workspace, so it stays on across reloads and pages.
"""

from __future__ import annotations

import streamlit as st

from core import workspace
from pages.ui import auth, common, plain

TOGGLE_KEY = "flora_explain"
PREFERENCE = "explain"

NOTES = {
    "resize": (
        "**Why 224 px, and why 'caffe' preprocessing.** ResNet-50 was trained on ImageNet photos of 224×224 "
        "pixels, so its filters expect objects at about that scale; smaller inputs train much faster but see "
        "less detail. Its ImageNet weights also expect pixels prepared the way they were in training (the "
        "'caffe' recipe): colour channels in BGR order, minus the average ImageNet pixel, *not* scaled to 0–1. "
        "Flora does this inside the model, so a saved model takes ordinary photos."
    ),
    "split": (
        "**Why three splits.** The model learns from the *training* photos. The *validation* photos pick the "
        "best epoch (and stop training early), so they are used to choose. The *test* photos are touched once, "
        "at the end: they give the honest score, because nothing was chosen by looking at them."
    ),
    "augmentation": (
        "**Why augmentation.** A small dataset lets a model memorise exact pixels. Random turns, shifts, zooms "
        "and colour changes show it a slightly different photo every time, so it has to learn what a {a} "
        "looks like instead. It runs during training only: evaluation and prediction see the photo as it is. "
        "Each transform claims something about your photos: a vertical flip says a {a} upside down is still a "
        "{a}; true for flowers seen from above or cells under a microscope, false for cats, cars or text."
    ),
    "freezing": (
        "**What freezing does.** In phase 1 ResNet-50's weights are *frozen*: they do not change, and only the "
        "small new head on top learns to map ResNet-50's 2,048 features to your classes. That is fast and "
        "cannot damage what ResNet-50 learnt on ImageNet. In phase 2 the top stages are unfrozen and nudged at "
        "a much lower learning rate. **BatchNorm stays frozen** even then: its statistics were measured on "
        "millions of images, and re-estimating them from small batches of your photos would wreck them."
    ),
    "feature_cache": (
        "**What the feature cache saves.** While ResNet-50 is frozen, its output for a photo never changes. "
        "Flora runs each photo (and each augmented version) through it once, stores the 2,048 numbers, and "
        "trains the head on those: an epoch then takes seconds instead of a full pass through ResNet-50. A "
        "later run on the same data, size and weights reuses the cache."
    ),
    "seeds": (
        "**Seed and split seed.** Training draws random numbers: the new head's first weights (a random start's "
        "backbone too), the augmentation, the order of the photos. The *seed* fixes them, so the same settings give "
        "the same run. It also draws which photos train, validate and test, unless a *split seed* is set: then that "
        "alone draws the split. Two runs with the same split seed and another seed are two random starts on the very "
        "same photos: the difference between them is what chance alone moves, the yardstick any other change (a "
        "setting, more photos, corrected labels) has to beat. Two seeds without a split seed are tested on mostly "
        "other photos, and Compare can pair them only on the few they share."
    ),
    "curves": (
        "**Reading the curves.** Training loss should fall. If **validation loss rises while training loss keeps "
        "falling**, the model is memorising the training photos (overfitting): it fits them better and better "
        "but generalises worse. Early stopping ends the phase then, and the weights of the best validation "
        "epoch are kept. Augmentation, dropout and more photos push that point later."
    ),
    "lr_finder": (
        "**Reading the range test.** A fresh head takes one training step per learning rate while the rate grows "
        "from 0.0000001 to 10, and the loss of each step is drawn (the line smooths the noisy dots). **Flat** at "
        "first: the steps are too small to move the weights, so the loss stays at its starting guess (with weak "
        "features, as from a random start, the flat part can be short and noisy). The dashed line is the loss of "
        "guessing every class equally: the lower the curve dips under it, the more the head can learn. **Falling** "
        "next: the rate is large enough to learn, and the larger it is, the faster the loss drops. **Exploding** "
        "at the end: each step overshoots the valley it aims for and lands higher up the other side, and the next "
        "overshoots more. The suggestion sits **below the lowest point** on purpose: the lowest point was reached "
        "after a single step at each rate, already on the edge of blowing up, while training holds one rate for "
        "thousands of steps. Half-way down the longest fall (fastai's *valley* rule) still learns fast and stays "
        "safe. It is a starting point, not a verdict: a sweep or a few short runs can confirm it."
    ),
    "sweep": (
        "**What a sweep does, and why the test split stays out of it.** Settings such as the learning rate, "
        "dropout or the head's size are not learnt from the photos: you choose them, and a poor choice can cost "
        "half the accuracy. A sweep tries many choices for you. Optuna picks each trial's settings from how the "
        "earlier ones did (its TPE sampler tries more of what worked), and stops a trial early when its validation "
        "loss is worse than the median of earlier trials at the same epoch (pruning). Because the backbone is "
        "frozen, its features are computed once and every trial only trains a small head: seconds, not minutes. "
        "The **validation** photos judge the trials. If the test photos judged them too, the best trial would be "
        "the one that happens to suit those particular photos, and its test score would flatter it; so the test "
        "split is used once, on the run you train from the winner."
    ),
    "confusion": (
        "**Reading the confusion matrix.** Each **row** is a true class: its cells count where that class's "
        "test photos ended up. The diagonal is what the model got right; a large cell off the diagonal, say "
        "in row *{a}* and column *{b}*, means {a} photos were often taken for {b}. Click a cell to see them."
    ),
    "precision_recall": (
        "**Precision and recall.** *Precision* of {a}: of the photos the model called {a}, the share that "
        "really were {a} (how much to trust a '{a}' answer). *Recall* of {a}: of the real {a} photos, the share "
        "it found (how many it misses). F1 is their harmonic mean; macro averages treat every class equally, "
        "weighted ones by how many test photos each class has."
    ),
    "prediction": (
        "**What the probabilities say.** The model spreads 100% over the classes it knows; it cannot say "
        "'none of these'. A photo of something else still gets a class, sometimes with high confidence, and a "
        "model trained from a random start is often confidently wrong."
    ),
    "prediction_sets": (
        "**Why a set instead of one answer.** A probability of 70% is a statement about the model; a *set* comes "
        "with a promise about the world: on average over many photos like the calibration ones, sets at 90% hold "
        "the right class 9 times in 10. The promise is over all those photos taken together, not for each photo, "
        "not for each class unless each class has its own threshold, and not for each "
        "kind of set: on a weak model one-class sets can be right less often while larger sets make up for it, so "
        "Flora counts how sets of each size did on held-out photos and says so under the set. Flora gives every "
        "class a score for the photo, how unlikely it would be as the answer (the probability of the classes "
        "ranked above it), and learns from half of the test photos the score under which the right class falls "
        "90% of the time; for each class separately when there are enough photos of it, so a hard class is "
        "covered too (conformal prediction). Nothing is drawn at random: the same photo always gets the same set. "
        "A set holds every class under its line: usually the top few, not always in the order of the bars. The "
        "other half of the test photos checks the promise. Sets grow where the model is unsure: one class for an "
        "easy {a}, several for a hard one; a set of every class means 'the model cannot tell here'. The promise is "
        "about photos like the test ones: a photo of something else entirely is covered by nothing."
    ),
    "tta": (
        "**Test-time augmentation.** The photo is shown to the model a few times, mirrored and slightly zoomed, "
        "and the answers are averaged, like asking for a second look. It costs one forward pass per view and "
        "does not always help, so Flora measures it on the validation photos first and uses it only when the "
        "gain is larger than chance explains (McNemar's test on the photos it changes)."
    ),
    "serving": (
        "**Why a server, and why these protocols.** A trained model is only useful when other programs can ask it. "
        "Flora's server speaks the protocols that production model servers (Triton, KServe, TF Serving) use, so a "
        "phone app or web page written against Flora keeps working when the model later moves to one of them. "
        "It gathers photos that arrive at the same moment into one batch: ResNet-50 classifies 16 photos "
        "together much faster than one after another. An **alias** such as *production* is the name clients "
        "use; moving it to a better run changes the model without changing any client."
    ),
    "monitoring": (
        "**Why watch a deployed model.** Test accuracy was measured on photos like the training ones. Once "
        "deployed, the model meets whatever people send: other cameras, seasons, things outside its classes. "
        "It cannot say so itself, so we compare what it is sent with what it was trained on: the mix of classes "
        "it predicts (chi-square test), how sure it is (KS test against validation), whether a simple classifier "
        "can tell new photos from validation ones by their ResNet features (AUC above 0.55 means it can), and "
        "how many photos look like no known class. Feedback accuracy is biased: people mostly report mistakes."
    ),
    "ood": (
        "**'Does not look like any class it knows.'** A classifier always spreads 100% over its classes, even for "
        "a photo of something it was never shown. Flora measures how far a photo's ResNet features are from "
        "every class's training photos (or how small its logits are, the 'energy' score) and flags the 5% most "
        "unusual, as judged on the validation photos. A flagged photo's answer deserves little trust."
    ),
    "selective": (
        "**Answering only when sure.** Instead of always answering, the model answers a photo only when its top "
        "probability reaches a threshold, and says 'not sure' otherwise. Flora picks the threshold on half of the "
        "test photos so that the share of wrong answers among the answered ones stays under the level you chose, "
        "with a stated confidence (Learn then Test: a test of 'too many errors' at each threshold, from strict to "
        "lenient, stopping at the first that fails). A strict level on a weak model may leave almost nothing "
        "answered, or no threshold at all: that is the honest result, not a fault."
    ),
    "class_thresholds": (
        "**A threshold per class.** Some classes are easy and some are confused with others. Raising {a}'s "
        "threshold makes its answers right more often (precision) but finds fewer {a} photos (recall): the slider "
        "shows both, counted on the test photos."
    ),
    "robustness": (
        "**Why corrupt the photos.** Test photos come from the same cameras and light as the training ones. Real "
        "photos arrive blurred, noisy, foggy, over-compressed. ImageNet-C's 15 corruptions at 5 strengths show "
        "which of these the model shrugs off and which break it; augmentation during training (flips, zooms, "
        "colour changes) often helps with some, so compare a run trained with it and one without."
    ),
    "feature_map_multilabel": (
        "**What the feature map shows.** For every photo, the backbone produces its *features*: what the head "
        "decides from, one score per label. The map squeezes them into two dimensions: photos the network sees as "
        "alike land close together. Coloured by a label, a region of one colour is a look the features tie to that "
        "label (or to its absence); photos with and without it mixed in one cloud are ones the features do not tell "
        "apart for that label, whatever the head does. A photo with several labels shows several things at once, so "
        "it may sit between the photos of each. PCA keeps the two directions of greatest spread; t-SNE keeps each "
        "photo's neighbours (clear clusters, but the gaps between them mean little)."
    ),
    "feature_map": (
        "**What the feature map shows.** For every photo, ResNet-50 produces 2,048 numbers (its *features*): "
        "what the head decides from. The map squeezes them into two dimensions so you can look at them: photos "
        "the network sees as alike land close together. A tight cluster of one colour is a class the features "
        "separate well; two classes mixed in one cloud are ones the network cannot tell apart, whatever the head "
        "does; a wrong point deep inside another class's cluster is often a mislabelled photo. PCA keeps the two "
        "directions of greatest spread (honest distances, weak clusters); t-SNE keeps each photo's neighbours "
        "(clear clusters, but the gaps between clusters and their sizes mean little)."
    ),
    "label_issues": (
        "**How suspected label errors are found.** Every photo is scored by a model that never saw it, so a "
        "mislabelled photo cannot be 'memorised' into looking right. For each class, Flora measures how sure "
        "those models typically are about the photos carrying that label; a photo is a suspect when another "
        "class clears *its* typical level and its own label does not win (the confident-learning rule, "
        "Northcutt et al. 2021). A suspect is a question for a person: some are real look-alikes, some show "
        "two subjects, some are simply in the wrong folder. How long a list is worth reading is measured too: Flora "
        "flips a few known labels on purpose and checks how deep into its ranking those flips keep turning up "
        "clearly more often than by chance; the suspects above that depth are shown first, the rest behind them."
    ),
    "label_next": (
        "**Which photos to label next (active learning).** Labelling costs a person's time, so label the photos "
        "that teach the model most. Flora's head (retrained on the stored features in a second) scores every "
        "waiting photo; the ones it is most *torn* about (the two likeliest classes close together) are candidates, "
        "and they are grouped by similarity so a batch covers different kinds of photos instead of ten near-copies "
        "(diverse mini-batch active learning, Zhdanov 2019). After each batch the head learns from the new labels. "
        "Whether this beats picking at random depends on the data: Flora measures it on photos whose labels it "
        "already knows, hiding them and labelling them again both ways."
    ),
    "calibration": (
        "**Calibration: is 90 % really 90 %?** A model's confidence is only useful if, among the photos it "
        "gives 90 %, about 90 % are right. Networks trained to minimise the loss often end up *over-confident*. "
        "The reliability diagram sorts the test photos by confidence and compares each bin's accuracy with the "
        "diagonal; ECE is the average gap, weighted by how many photos each bin holds. *Temperature scaling* "
        "divides every logit by one number T, fitted on the validation photos: T > 1 softens the "
        "probabilities, T < 1 sharpens them. The ranking of the classes, and so the accuracy, does not change."
    ),
    "paired_test": (
        "**Why a paired test.** Two runs tested on the same photos are not two independent samples: most photos "
        "are easy for both, some hard for both. Only the photos they disagree on carry evidence. If the runs were "
        "equally good, each such photo would favour either run like a coin toss; McNemar's exact test asks how "
        "unlikely the observed split is (e.g. 31 vs 12). Comparing two accuracies with their own error bars "
        "ignores the pairing and misses real differences, or finds ones that are only noise. Multi-label runs "
        "are judged by AP, which no single photo decides: there the interval resamples the same photos for both "
        "runs, and the test swaps the two runs' answers photo by photo at random to see how often chance alone "
        "makes a difference as large."
    ),
    "gradcam": (
        "**Reading a Grad-CAM map.** The backbone ends in a grid of cells, each seeing one region of the photo "
        "(7×7 at 224 px, 2×2 at 64 px). Grad-CAM asks how much each cell's features raised a class's score, "
        "and paints that over the photo: bright where the region counted most. A coarse grid can say *which "
        "part* of the photo decided (a side, a corner), never *which detail*; train at a larger size for finer "
        "maps. A map shows what the model used, not what is right: a {a} judged by the background behind it is "
        "a warning, not an explanation to trust."
    ),
    "top_losses": (
        "**Top losses.** The loss of a test photo is how surprised the model was by its true label: low when it "
        "gave the true class a high probability, very high when it was *sure* of another class. The top of this "
        "list is where to look first: confident mistakes are either a weakness of the model (two classes it "
        "cannot tell apart) or a wrong label (a {b} photo filed under {a})."
    ),
    "health": (
        "**Why check a dataset before training.** Problems in the data become problems in the model, silently: "
        "the same photo in training and test makes the test score flatter the model (leakage); duplicates under "
        "two classes teach it a contradiction; unreadable or tiny images waste steps; a very small class gets a "
        "test score of one or two photos. The check finds them by hashing every photo (never comparing every "
        "pair), so it stays fast on large datasets."
    ),
}

# Where a run starts from random weights, some notes would be wrong: these replace them.
RANDOM_START = {
    "resize": (
        "**Image size and 'caffe' preprocessing, on a random start.** ResNet-50's ImageNet filters expect objects "
        "at about 224×224 pixels; this run starts from **random weights**, so no scale or recipe is expected yet: "
        "smaller inputs (32–64 px) train far faster and are fine for seeing the whole pipeline work, at the cost of "
        "detail. Flora still prepares pixels the 'caffe' way (BGR order, minus the average ImageNet pixel) inside "
        "the model, so a random start and an ImageNet start take the same photos and can be compared."
    ),
    "freezing": (
        "**What freezing does, on a random start.** In phase 1 the backbone's weights are *frozen* and only the "
        "new head learns. This run starts from **random weights**: the frozen backbone has learnt nothing, so "
        "its 2,048 features are random mixtures of the pixels, and the head learns what it can from them "
        "(colour, rough texture). That is why a random start scores far below ImageNet weights. Phase 2 "
        "(fine-tuning) is where a random backbone learns features of its own, slowly, and needs many photos. "
        "BatchNorm stays frozen there too; its statistics are a random network's, not ImageNet's, so unfreezing "
        "them would not wreck anything learnt, but on small batches it would make training noisy."
    ),
}


def ensure_toggle_state() -> None:
    """Load the remembered choice into the session (before the toggle is drawn)."""
    if TOGGLE_KEY not in st.session_state:
        st.session_state[TOGGLE_KEY] = bool(
            workspace.preference(common.data_root(), PREFERENCE, False, person=auth.current_user().id)
        )


def remember_toggle() -> None:
    """Toggle callback: keep the choice for later sessions."""
    workspace.set_preference(
        common.data_root(), PREFERENCE, bool(st.session_state.get(TOGGLE_KEY)), person=auth.current_user().id
    )


def toggle() -> None:
    """The sidebar's "Explain this step" switch."""
    ensure_toggle_state()
    st.toggle(
        "Explain this step",
        key=TOGGLE_KEY,
        on_change=remember_toggle,
        help="Short notes on why each step is done as it is (for learning and teaching transfer learning).",
    )


def note(topic: str, classes: list[str] | None = None, random_start: bool = False) -> str:
    """The note on `topic`, in the words of this dataset (its own class names, escaped: a note is Markdown) and this
    run (a random start)."""
    text = RANDOM_START[topic] if random_start and topic in RANDOM_START else NOTES[topic]
    names = [plain.md(c) for c in (classes or []) if c] or ["rose", "tulip"]
    a, b = names[0], names[1] if len(names) > 1 else names[0]
    return text.replace("{a}", a).replace("{b}", b)


def explain(topic: str, classes: list[str] | None = None, random_start: bool = False) -> None:
    """Show the note on `topic` here, when the notes are on (see `note`)."""
    ensure_toggle_state()
    if st.session_state.get(TOGGLE_KEY):
        st.info(note(topic, classes, random_start), icon=":material/school:")
