/* The page around floraClassify: photos from the file inputs or the camera, each answer drawn as it comes. */
(function () {
  "use strict";
  var status = document.getElementById("status");
  var results = document.getElementById("results");
  var levelSelect = document.getElementById("level");
  var config = null;

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "note error" : "note";
    status.hidden = !text;
  }

  function percent(p) {
    return (100 * p).toFixed(1) + "%";
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function whole(p) {
    return Math.round(100 * p) + "%";
  }

  // The set in words, with what sets at its level did on the run's held-out photos (measured, not the level).
  function setWords(set) {
    var sets = config.sets;
    var total = config.classes.length;
    var names = set.classes;
    var level = whole(set.level);
    var what;
    if (names.length === total) {
      what = "At " + level + ": any of the " + total + " classes, so the model cannot tell here.";
    } else if (names.length === 1) {
      what = "At " + level + ": one class, " + names[0] + ".";
    } else {
      what = "At " + level + ": could be " + names.slice(0, -1).join(", ") + " or " + names[names.length - 1] +
        " (" + names.length + " of " + total + " classes).";
    }
    var measured = (sets.measured || {})[String(Math.round(set.level * 100))];
    var photos = sets.held_out_photos ? sets.held_out_photos + " " : "";
    if (!measured) {
      var fitted = whole(sets.fitted_level);
      return what + " Sets at this level were not counted on held-out photos; at " + fitted + " they held the right class " +
        percent(sets.held_out_coverage) + " of the time on the run's " + photos + "held-out test photos.";
    }
    var words = what + " On the run's " + photos + "held-out test photos, sets at " + level + " held the right class " +
      percent(measured.coverage) + " of the time";
    var record = (measured.by_size || {})[String(names.length)];
    if (record && record[1]) {
      var sized = names.length === total ? "sets of every class" : names.length === 1 ? "one-class sets" : names.length + "-class sets";
      words += "; " + sized + " were right " + record[0] + " of " + record[1] + " times";
      if (record[0] / record[1] < set.level) return words + ", less often than " + level + ": read this as the model's best guess.";
    }
    return words + ".";
  }

  function draw(card, answer) {
    var body = card.querySelector(".answer");
    body.textContent = "";
    body.appendChild(element("h2", "label", answer.label + " · " + percent(answer.probability)));
    answer.top.forEach(function (item) {
      var bar = element("div", "bar");
      bar.dataset.label = item.label;
      bar.dataset.probability = String(item.probability);
      bar.appendChild(element("span", "name", item.label));
      var track = element("span", "track");
      var fill = element("span", "fill");
      fill.style.width = Math.max(0.5, 100 * item.probability).toFixed(1) + "%";
      fill.style.display = "block";
      track.appendChild(fill);
      bar.appendChild(track);
      bar.appendChild(element("span", "value", percent(item.probability)));
      body.appendChild(bar);
    });
    if (answer.prediction_set) {
      body.appendChild(element("p", "set", setWords(answer.prediction_set)));
      card.dataset.set = JSON.stringify(answer.prediction_set.classes);
    }
    if (answer.none_of_these && answer.none_of_these.flag) {
      body.appendChild(
        element("p", "warning", "None of these? This photo does not look like the photos the model learned from: treat the answer with care.")
      );
    }
    if (answer.views > 1) {
      body.appendChild(element("p", "small", "Averaged over " + answer.views + " views of the photo (this run measured that it helps)."));
    }
    if (answer.approximate_decode) {
      body.appendChild(element("p", "small", "A large JPEG: decoded whole here, at a reduced scale in Flora (probabilities may differ slightly)."));
    }
    card.dataset.label = answer.label;
    card.dataset.probabilities = JSON.stringify(answer.probabilities);
    card.dataset.done = "true";
  }

  // A card for the photo, placed after those before it (so results stay in the order chosen), answered later.
  function cardFor(file) {
    var name = file.name || "camera";
    var card = element("article", "result");
    card.dataset.name = name;
    var picture = element("img");
    picture.alt = name;
    picture.src = URL.createObjectURL(file);
    card.appendChild(picture);
    var side = element("div");
    side.appendChild(element("p", "file", name));
    var body = element("div", "answer", "Waiting…");
    side.appendChild(body);
    card.appendChild(side);
    results.appendChild(card);
    return card;
  }

  async function classifyFile(file, card) {
    card = card || cardFor(file);
    var body = card.querySelector(".answer");
    try {
      await flora.model(); // a photo given before the model is ready waits for it
      body.textContent = "Classifying…";
      var level = levelSelect.value ? Number(levelSelect.value) / 100 : undefined;
      draw(card, await floraClassify(file, { level: level, topK: Math.min(5, config.classes.length) }));
    } catch (e) {
      body.textContent = (file.name || "photo") + ": " + e.message;
      card.dataset.error = e.message;
      card.dataset.done = "true";
    }
  }

  async function classifyFiles(list) {
    var cards = list.map(cardFor);
    for (var i = 0; i < list.length; i++) await classifyFile(list[i], cards[i]);
  }

  function onPick(event) {
    var files = Array.prototype.slice.call(event.target.files);
    event.target.value = "";
    classifyFiles(files);
  }

  document.getElementById("photos").addEventListener("change", onPick);
  document.getElementById("snapshot").addEventListener("change", onPick);

  // The photo buttons, the camera and the level wait for the model: a photo chosen before it has nothing to run on.
  function enable(on) {
    ["photos", "snapshot", "camera", "level"].forEach(function (id) {
      var control = document.getElementById(id);
      control.disabled = !on;
      var label = control.closest("label.button");
      if (label) label.classList.toggle("disabled", !on);
    });
  }

  // How far to trust the page, said once: test accuracy beside chance, a random start, the 'none of these' check.
  function showTrust(config) {
    var trust = config.trust;
    var box = document.getElementById("trust");
    var lines = [];
    if (trust) {
      var chance = "guessing would get " + percent(trust.chance) + " (1 in " + config.classes.length + ")";
      if (trust.accuracy === null || trust.accuracy === undefined) {
        lines.push("No test accuracy was stored with this run; " + chance + ".");
      } else {
        var rough = trust.test_photos < 100 ? " So few photos give a rough figure." : "";
        var near = trust.accuracy < 2 * trust.chance ? " That is not far above guessing: treat every answer as a rough guess." : "";
        lines.push("Test accuracy " + percent(trust.accuracy) + " on " + trust.test_photos + " photos the model never trained on; " +
          chance + "." + rough + near);
      }
      if (trust.random_start) {
        lines.push("This model started from random weights, not pretrained ones: expect low accuracy and confident mistakes " +
          "(a high percentage here does not mean the answer is right).");
      }
    }
    if (config.ood) {
      var weak = config.ood.weak ? "The 'none of these' warning misses most images from elsewhere: no warning does not mean the photo shows one of these classes. " : "";
      lines.push(weak + "The 'none of these' check: " + config.ood.summary);
    } else {
      lines.push("No 'none of these' check: a photo of anything else still gets one of these classes.");
    }
    lines.forEach(function (line) {
      box.appendChild(element("p", "", line));
    });
    box.hidden = lines.length === 0;
  }

  var stream = null;
  var video = document.getElementById("video");
  document.getElementById("camera").addEventListener("click", async function () {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("This browser gives no camera to this page (a camera needs https or localhost); choose photos instead.", true);
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch (e) {
      say("No camera: " + e.message, true);
      return;
    }
    video.srcObject = stream;
    document.getElementById("live").hidden = false;
  });
  document.getElementById("shoot").addEventListener("click", function () {
    var canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob(function (blob) {
      if (blob) classifyFile(new File([blob], "camera.png", { type: "image/png" }));
    }, "image/png");
  });
  document.getElementById("stop").addEventListener("click", function () {
    if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
    document.getElementById("live").hidden = true;
  });

  flora
    .model()
    .then(function (state) {
      config = state.config;
      document.title = config.title;
      document.getElementById("title").textContent = config.title;
      document.getElementById("about").textContent = config.about;
      if (config.sets) {
        config.sets.levels.forEach(function (level) {
          var option = element("option", "", level + "%");
          option.value = String(level);
          option.selected = level === Math.round(config.sets.fitted_level * 100);
          levelSelect.appendChild(option);
        });
        document.getElementById("level-box").hidden = false;
      }
      showTrust(config);
      say("");
      enable(true);
      document.body.dataset.ready = "true";
    })
    .catch(function (e) {
      say("The model did not load, so the photo buttons stay off: " + e.message, true);
      document.body.dataset.ready = "error";
    });
})();
