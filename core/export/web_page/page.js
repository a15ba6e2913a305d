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
      var set = answer.prediction_set;
      var words =
        set.classes.length === 1
          ? "One class is enough here: " + set.classes[0] + "."
          : "Could be " + set.classes.join(" or ") + ".";
      body.appendChild(
        element("p", "set", words + " Sets like this held the right class " + percent(set.level) + " of the time on the run's held-out photos.")
      );
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

  async function classifyFile(file) {
    var card = element("article", "result");
    card.dataset.name = file.name || "camera";
    var picture = element("img");
    picture.alt = file.name || "photo";
    picture.src = URL.createObjectURL(file);
    card.appendChild(picture);
    var body = element("div", "answer", "Classifying…");
    card.appendChild(body);
    results.prepend(card);
    try {
      var level = levelSelect.value ? Number(levelSelect.value) / 100 : undefined;
      draw(card, await floraClassify(file, { level: level, topK: Math.min(5, config.classes.length) }));
    } catch (e) {
      body.textContent = (file.name || "photo") + ": " + e.message;
      card.dataset.error = e.message;
      card.dataset.done = "true";
    }
  }

  async function classifyFiles(list) {
    for (var i = 0; i < list.length; i++) await classifyFile(list[i]);
  }

  function onPick(event) {
    classifyFiles(Array.prototype.slice.call(event.target.files)).then(function () {
      event.target.value = "";
    });
  }

  document.getElementById("photos").addEventListener("change", onPick);
  document.getElementById("snapshot").addEventListener("change", onPick);

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
      say("");
      document.body.dataset.ready = "true";
    })
    .catch(function (e) {
      say(e.message, true);
      document.body.dataset.ready = "error";
    });
})();
