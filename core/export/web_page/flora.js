/* Flora's classifier in the browser: the run's own preprocessing, its ONNX model on ONNX Runtime Web (vendored
 * beside this file), its calibrated probabilities, prediction sets and "none of these" check.
 *
 *   window.floraClassify(image, {level: 0.9, topK: 3}) -> Promise of
 *     {label, probability, top: [{label, probability}], probabilities: {class: p}, prediction_set, none_of_these}
 *
 * `image`: an <img> (its file is read again from its URL when it can be), a File or Blob, a <canvas> or an
 * ImageBitmap. Nothing leaves the page: the model, the runtime and the photo stay in this folder and this tab.
 * The arithmetic mirrors Flora's Python (core/data/imaging.py for the pixels, core/results/conformal_scores.py
 * for the sets, core/serving/ood.py for the check); Flora's tests compare the two on the run's photos.
 */
(function (root) {
  "use strict";

  // ------------------------------------------------------------------ pixels, as core.data.imaging makes them

  // Pillow's fixed-point resampling (src/libImaging/Resample.c): 8-bit results, PRECISION_BITS = 22.
  var PRECISION = 4194304; // 1 << 22
  var HALF = 2097152;

  function bicubic(x) {
    var a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  }

  function coefficients(inSize, in0, in1, outSize) {
    in0 = Math.fround(in0);
    in1 = Math.fround(in1);
    var scale = Math.fround(in1 - in0) / outSize;
    var filterscale = Math.max(scale, 1);
    var support = 2 * filterscale;
    var ksize = Math.ceil(support) * 2 + 1;
    var bounds = new Int32Array(outSize * 2);
    var kk = new Float64Array(outSize * ksize);
    for (var xx = 0; xx < outSize; xx++) {
      var center = in0 + (xx + 0.5) * scale;
      var ss = 1 / filterscale;
      var xmin = Math.max(0, Math.trunc(center - support + 0.5));
      var xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
      var ww = 0;
      var x;
      for (x = 0; x < xmax; x++) {
        var w = bicubic((x + xmin - center + 0.5) * ss);
        kk[xx * ksize + x] = w;
        ww += w;
      }
      for (x = 0; x < xmax; x++) {
        if (ww !== 0) kk[xx * ksize + x] /= ww;
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    var fixed = new Float64Array(kk.length);
    for (var i = 0; i < kk.length; i++) {
      fixed[i] = kk[i] < 0 ? Math.trunc(-0.5 + kk[i] * PRECISION) : Math.trunc(0.5 + kk[i] * PRECISION);
    }
    return { ksize: ksize, bounds: bounds, kk: fixed };
  }

  function clip8(ss) {
    var v = Math.floor(ss / PRECISION);
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  // One 1-D pass of Pillow's 8-bit resampling along x (horizontal) or y, over the rows (or columns) `first`..`last`
  // of the other axis; the result is clipped to 8 bits, as Pillow's intermediate image is.
  function pass(image, coeffs, outSize, horizontal, first, last) {
    var src = image.data;
    var count = last - first;
    var outW = horizontal ? outSize : count;
    var outH = horizontal ? count : outSize;
    var out = new Uint8Array(outW * outH * 3);
    for (var i = 0; i < count; i++) {
      for (var o = 0; o < outSize; o++) {
        var min = coeffs.bounds[o * 2];
        var n = coeffs.bounds[o * 2 + 1];
        var k = o * coeffs.ksize;
        for (var c = 0; c < 3; c++) {
          var ss = HALF;
          for (var t = 0; t < n; t++) {
            var at = horizontal ? (i + first) * image.width + min + t : (min + t) * image.width + i + first;
            ss += src[at * 3 + c] * coeffs.kk[k + t];
          }
          out[(horizontal ? i * outW + o : o * outW + i) * 3 + c] = clip8(ss);
        }
      }
    }
    return { data: out, width: outW, height: outH };
  }

  // Image.resize(..., box): two passes, the first over only the rows (or columns) the second needs. Pillow 13 runs
  // the vertical pass first when the height shrinks by more than twice the pixels the width does.
  function resample(image, outW, outH, box) {
    var verticalFirst = image.height - outH > 0 && image.height - outH > (image.width - outW) * 2;
    var horiz = coefficients(image.width, box[0], box[2], outW);
    var vert = coefficients(image.height, box[1], box[3], outH);
    var shift = function (coeffs, by) {
      var bounds = Int32Array.from(coeffs.bounds);
      for (var i = 0; i < bounds.length; i += 2) bounds[i] -= by;
      return { ksize: coeffs.ksize, bounds: bounds, kk: coeffs.kk };
    };
    if (verticalFirst) {
      var xFirst = horiz.bounds[0];
      var xLast = horiz.bounds[outW * 2 - 2] + horiz.bounds[outW * 2 - 1];
      var columns = pass(image, vert, outH, false, xFirst, xLast);
      return pass(columns, shift(horiz, xFirst), outW, true, 0, outH);
    }
    var yFirst = vert.bounds[0];
    var yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
    var rows = pass(image, horiz, outW, true, yFirst, yLast);
    return pass(rows, shift(vert, yFirst), outH, false, 0, outW);
  }

  // Pillow's Image.reduce over `box`: averages of factor x factor blocks (the last ones partial), in its
  // fixed point: (sum + count / 2) * trunc(2^32 / (256 count)) >> 24.
  function reduce(image, fx, fy, box) {
    var bw = box[2] - box[0];
    var bh = box[3] - box[1];
    var outW = Math.ceil(bw / fx);
    var outH = Math.ceil(bh / fy);
    var out = new Uint8Array(outW * outH * 3);
    var src = image.data;
    for (var y = 0; y < outH; y++) {
      var y0 = box[1] + y * fy;
      var y1 = Math.min(y0 + fy, box[3]);
      for (var x = 0; x < outW; x++) {
        var x0 = box[0] + x * fx;
        var x1 = Math.min(x0 + fx, box[2]);
        var count = (y1 - y0) * (x1 - x0);
        var multiplier = Math.trunc(Math.fround(4294967296 / Math.fround(256 * count)));
        var amend = Math.floor(count / 2);
        for (var c = 0; c < 3; c++) {
          var ss = amend;
          for (var yy = y0; yy < y1; yy++) {
            for (var xx = x0; xx < x1; xx++) ss += src[(yy * image.width + xx) * 3 + c];
          }
          out[(y * outW + x) * 3 + c] = Math.floor((ss * multiplier) / 16777216) & 255;
        }
      }
    }
    return { data: out, width: outW, height: outH };
  }

  // Image.resize(size, BICUBIC, box, reducing_gap=3.0), as core.data.imaging shrinks.
  function pillowResize(image, size, box) {
    var gap = 3.0;
    var fx = Math.trunc((box[2] - box[0]) / size / gap) || 1;
    var fy = Math.trunc((box[3] - box[1]) / size / gap) || 1;
    if (fx > 1 || fy > 1) {
      var support = 2.0 - 0.5;
      var sx = (support * (box[2] - box[0])) / size;
      var sy = (support * (box[3] - box[1])) / size;
      var safe = [
        Math.max(0, Math.trunc(box[0] - sx)),
        Math.max(0, Math.trunc(box[1] - sy)),
        Math.min(image.width, Math.ceil(box[2] + sx)),
        Math.min(image.height, Math.ceil(box[3] + sy)),
      ];
      image = reduce(image, fx, fy, safe);
      box = [(box[0] - safe[0]) / fx, (box[1] - safe[1]) / fy, (box[2] - safe[0]) / fx, (box[3] - safe[1]) / fy];
    }
    return resample(image, size, size, box);
  }

  // OpenCV's INTER_LINEAR enlarging of 8-bit images: half-pixel centres, edges clamped, 11-bit weights each rounded
  // on its own, and its SIMD vertical pass's rounding ((b0 * (s0 >> 4)) >> 16 ...). Within one level of OpenCV's
  // (it mixes in other roundings at places), which moves probabilities by about 1e-4.
  function bilinearUp(image, size) {
    var side = image.width;
    var scale = 1 / (size / side);
    var index = new Int32Array(size);
    var w0 = new Int32Array(size);
    var w1 = new Int32Array(size);
    for (var i = 0; i < size; i++) {
      var f = Math.fround((i + 0.5) * scale - 0.5);
      var s = Math.floor(f);
      f = Math.fround(f - s);
      if (s < 0) {
        s = 0;
        f = 0;
      }
      if (s >= side - 1) {
        s = side - 1;
        f = 0;
      }
      index[i] = s;
      w0[i] = Math.round((1 - f) * 2048);
      w1[i] = Math.round(f * 2048);
    }
    var src = image.data;
    var rows = new Int32Array(side * size * 3); // the horizontal pass, every source row
    for (var y = 0; y < side; y++) {
      for (var x = 0; x < size; x++) {
        var next = Math.min(index[x] + 1, side - 1);
        for (var c = 0; c < 3; c++) {
          rows[(y * size + x) * 3 + c] = src[(y * side + index[x]) * 3 + c] * w0[x] + src[(y * side + next) * 3 + c] * w1[x];
        }
      }
    }
    var out = new Uint8Array(size * size * 3);
    for (y = 0; y < size; y++) {
      var r0 = index[y];
      var r1 = Math.min(r0 + 1, side - 1);
      for (x = 0; x < size * 3; x++) {
        var a = rows[r0 * size * 3 + x];
        var b = rows[r1 * size * 3 + x];
        var v = (Math.floor((w0[y] * (a >> 4)) / 65536) + Math.floor((w1[y] * (b >> 4)) / 65536) + 2) >> 2;
        out[y * size * 3 + x] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
    return { data: out, width: size, height: size };
  }

  function crop(image, left, top, width, height) {
    var out = new Uint8Array(width * height * 3);
    for (var y = 0; y < height; y++) {
      var from = ((top + y) * image.width + left) * 3;
      out.set(image.data.subarray(from, from + width * 3), y * width * 3);
    }
    return { data: out, width: width, height: height };
  }

  // core.data.imaging._resize_center_square: the central square at `size` (bicubic shrinking, bilinear enlarging)
  function centerSquare(image, size) {
    var side = Math.min(image.width, image.height);
    if (side > size) {
      var left = (image.width - side) / 2;
      var top = (image.height - side) / 2;
      return pillowResize(image, size, [left, top, left + side, top + side]);
    }
    var square = crop(image, Math.floor((image.width - side) / 2), Math.floor((image.height - side) / 2), side, side);
    return side === size ? square : bilinearUp(square, size);
  }

  // core.data.imaging.load_for_model after the decode: the cache square, then its centre `imageSize` crop.
  function modelPixels(image, imageSize, cacheSize, jpeg) {
    var approximate = false;
    if (jpeg) {
      // Flora decodes a large JPEG at libjpeg's 1/2, 1/4 or 1/8 scale; a browser decodes it whole, so the page
      // averages blocks of the same size instead (close, not identical: the README says how close).
      var scale = 1;
      var shorter = Math.min(image.width, image.height);
      while (scale < 8 && Math.floor(shorter / (scale * 2)) >= cacheSize) scale *= 2;
      if (scale > 1) {
        image = reduce(image, scale, scale, [0, 0, image.width, image.height]);
        approximate = true;
      }
    }
    var square = centerSquare(image, cacheSize);
    var offset = Math.floor((cacheSize - imageSize) / 2);
    var pixels = crop(square, offset, offset, imageSize, imageSize);
    pixels.approximate = approximate;
    return pixels;
  }

  // RGBA from a canvas -> RGB, transparency on white as Pillow's paste with the alpha as mask does.
  function rgbOnWhite(rgba, width, height) {
    var out = new Uint8Array(width * height * 3);
    for (var i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      var alpha = rgba[i + 3];
      for (var c = 0; c < 3; c++) {
        if (alpha === 255) {
          out[j + c] = rgba[i + c];
        } else {
          var t = 255 * (255 - alpha) + rgba[i + c] * alpha + 128;
          out[j + c] = ((t >> 8) + t) >> 8;
        }
      }
    }
    return { data: out, width: width, height: height };
  }

  // ------------------------------------------------------------------ answers, as core.serving.engine shapes them

  function softmax(logits, temperature) {
    var max = -Infinity;
    var i;
    for (i = 0; i < logits.length; i++) max = Math.max(max, logits[i] / temperature);
    var sum = 0;
    var out = new Float64Array(logits.length);
    for (i = 0; i < logits.length; i++) {
      out[i] = Math.exp(logits[i] / temperature - max);
      sum += out[i];
    }
    for (i = 0; i < logits.length; i++) out[i] /= sum;
    return out;
  }

  function logsumexp(values) {
    var max = -Infinity;
    for (var i = 0; i < values.length; i++) max = Math.max(max, values[i]);
    var sum = 0;
    for (var j = 0; j < values.length; j++) sum += Math.exp(values[j] - max);
    return max + Math.log(sum);
  }

  function order(probabilities) {
    var idx = [];
    for (var i = 0; i < probabilities.length; i++) idx.push(i);
    return idx.sort(function (a, b) {
      return probabilities[b] - probabilities[a] || a - b; // numpy's stable argsort of -p
    });
  }

  // conformal_scores.class_scores + set_masks: every class whose score is within the level's threshold, and the top.
  function predictionSet(probabilities, sets, level) {
    var key = String(Math.round(level * 100));
    var cut = sets.cuts[key];
    if (cut === undefined) throw new Error("prediction sets are stored for levels " + Object.keys(sets.cuts).join(", ") + "%");
    var ranked = order(probabilities);
    var u = 1; // not randomised (conformal_scores.class_scores): the same photo always gets the same set
    var inside = [];
    var cumulative = 0;
    for (var r = 0; r < ranked.length; r++) {
      var j = ranked[r];
      cumulative += probabilities[j];
      var score = cumulative - u * probabilities[j] + sets.lam * Math.max(0, r + 1 - sets.k_reg);
      var threshold = Array.isArray(cut) ? cut[j] : cut;
      if (r === 0 || score <= (threshold === null ? Infinity : threshold) + 1e-6) inside.push(j);
    }
    return inside;
  }

  function mahalanobis(features, ref) {
    var k = ref.components.length / ref.dim;
    var z = new Float64Array(k);
    for (var i = 0; i < k; i++) {
      var s = 0;
      for (var d = 0; d < ref.dim; d++) s += Math.fround(features[d] - ref.mean[d]) * ref.components[i * ref.dim + d];
      z[i] = Math.fround(s);
    }
    var best = Infinity;
    var diff = new Float64Array(k);
    for (var c = 0; c < ref.means.length / k; c++) {
      if (!isFinite(ref.means[c * k])) continue;
      for (i = 0; i < k; i++) diff[i] = z[i] - ref.means[c * k + i];
      var total = 0;
      for (i = 0; i < k; i++) {
        var row = 0;
        for (var j = 0; j < k; j++) row += ref.precision[i * k + j] * diff[j];
        total += diff[i] * row;
      }
      best = Math.min(best, total);
    }
    return Math.max(best, 0);
  }

  // ------------------------------------------------------------------ test-time augmentation's views (core.results.probabilities.tta)

  function mirrored(pixels, size) {
    var out = new Float32Array(pixels.length);
    for (var y = 0; y < size; y++) {
      for (var x = 0; x < size; x++) {
        for (var c = 0; c < 3; c++) out[(y * size + x) * 3 + c] = pixels[(y * size + (size - 1 - x)) * 3 + c];
      }
    }
    return out;
  }

  // keras.ops.image.resize(corner, bilinear) on TensorFlow: half-pixel centres, no antialiasing when enlarging.
  function zoomed(pixels, size, keep, fromEnd) {
    var start = fromEnd ? size - keep : 0;
    var scale = keep / size;
    var out = new Float32Array(size * size * 3);
    function axis(i) {
      var f = (i + 0.5) * scale - 0.5;
      var low = Math.floor(f);
      return [Math.max(low, 0), Math.min(Math.ceil(f), keep - 1), f - low];
    }
    for (var y = 0; y < size; y++) {
      var ay = axis(y);
      for (var x = 0; x < size; x++) {
        var ax = axis(x);
        for (var c = 0; c < 3; c++) {
          var at = function (yy, xx) {
            return pixels[((start + yy) * size + start + xx) * 3 + c];
          };
          var top = at(ay[0], ax[0]) + (at(ay[0], ax[1]) - at(ay[0], ax[0])) * ax[2];
          var bottom = at(ay[1], ax[0]) + (at(ay[1], ax[1]) - at(ay[1], ax[0])) * ax[2];
          out[(y * size + x) * 3 + c] = Math.fround(top + (bottom - top) * ay[2]);
        }
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ the model

  var here = root.document && document.currentScript ? new URL(".", document.currentScript.src).href : "./";
  var loading = null;

  function fail(message) {
    throw new Error(message);
  }

  async function readJson(path) {
    var response = await fetch(here + path);
    if (!response.ok) fail(path + ": HTTP " + response.status);
    return response.json();
  }

  async function loadReference(ood) {
    var response = await fetch(here + ood.file);
    if (!response.ok) fail(ood.file + ": HTTP " + response.status);
    var buffer = await response.arrayBuffer();
    var part = function (name) {
      var spec = ood.arrays[name];
      return new Float32Array(buffer, spec.offset, spec.length);
    };
    return { mean: part("pca_mean"), components: part("pca_components"), means: part("class_means"), precision: part("precision"), dim: ood.arrays.pca_mean.length };
  }

  async function load() {
    if (root.location && root.location.protocol === "file:") {
      fail(
        "Browsers do not let a page opened from a file read the model beside it. In this folder run " +
          "`python3 -m http.server 8000`, then open http://localhost:8000/ (or put the folder on any static web server)."
      );
    }
    if (typeof ort === "undefined") fail("vendor/ort.wasm.min.js did not load: is the vendor folder beside index.html?");
    var config = await readJson("model.json");
    ort.env.wasm.wasmPaths = here + "vendor/";
    ort.env.wasm.numThreads = root.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    ort.env.wasm.proxy = false;
    var session = await ort.InferenceSession.create(here + config.model_file, { executionProviders: ["wasm"] });
    var reference = config.ood && config.ood.method === "mahalanobis" ? await loadReference(config.ood) : null;
    return { config: config, session: session, reference: reference };
  }

  function model() {
    if (!loading) {
      loading = load();
      loading.catch(function () {
        loading = null; // a later call tries again
      });
    }
    return loading;
  }

  async function forward(state, pixels) {
    var size = state.config.image_size;
    var input = new ort.Tensor("float32", pixels, [1, size, size, 3]);
    var feeds = {};
    feeds[state.config.input] = input;
    var out = await state.session.run(feeds);
    return { logits: out.logits.data, features: out.features ? out.features.data : null };
  }

  function isJpeg(bytes) {
    return bytes.length > 2 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  }

  async function decode(source) {
    var blob = null;
    if (root.Blob && source instanceof Blob) {
      blob = source;
    } else if (root.HTMLImageElement && source instanceof HTMLImageElement) {
      if (!source.complete && source.decode) await source.decode();
      try {
        var response = await fetch(source.currentSrc || source.src);
        if (response.ok) blob = await response.blob();
      } catch (e) {
        blob = null; // another origin: drawn as the browser shows it
      }
    }
    var jpeg = false;
    var bitmap;
    var options = { colorSpaceConversion: "none", premultiplyAlpha: "none" };
    if (blob) {
      jpeg = isJpeg(new Uint8Array(await blob.slice(0, 3).arrayBuffer()));
      bitmap = await createImageBitmap(blob, options);
    } else {
      bitmap = await createImageBitmap(source, options);
    }
    var width = bitmap.width;
    var height = bitmap.height;
    if (!width || !height) fail("the image has no pixels");
    var canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    var context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    if (bitmap.close) bitmap.close();
    var image = rgbOnWhite(context.getImageData(0, 0, width, height).data, width, height);
    return { image: image, jpeg: jpeg };
  }

  async function classify(source, options) {
    options = options || {};
    var state = await model();
    var config = state.config;
    var decoded = await decode(source);
    var prepared = modelPixels(decoded.image, config.image_size, config.cache_size, decoded.jpeg);
    var pixels = Float32Array.from(prepared.data);
    var size = config.image_size;
    var first = await forward(state, pixels);
    var single = softmax(first.logits, config.temperature);
    var probabilities = single;
    var views = 1;
    if (config.tta) {
      var keep = Math.max(1, Math.round(size * config.tta.zoom));
      var others = [mirrored(pixels, size), zoomed(pixels, size, keep, false), zoomed(pixels, size, keep, true)];
      var sum = Float64Array.from(single);
      for (var v = 0; v < others.length; v++) {
        var p = softmax((await forward(state, others[v])).logits, config.temperature);
        for (var i = 0; i < p.length; i++) sum[i] += p[i];
      }
      probabilities = sum.map(function (s) {
        return s / (others.length + 1);
      });
      views = others.length + 1;
    }
    var classes = config.classes;
    var ranked = order(probabilities);
    var topK = Math.max(1, Math.min(options.topK || 3, classes.length));
    var answer = {
      label: classes[ranked[0]],
      probability: probabilities[ranked[0]],
      top: ranked.slice(0, topK).map(function (j) {
        return { label: classes[j], probability: probabilities[j] };
      }),
      probabilities: {},
      views: views,
      prediction_set: null,
      none_of_these: null,
      approximate_decode: prepared.approximate,
    };
    classes.forEach(function (name, j) {
      answer.probabilities[name] = probabilities[j];
    });
    var sets = config.sets;
    if (sets && options.level !== null) {
      var level = options.level || sets.fitted_level;
      var fittedOn = sets.views > 1 && views > 1 ? probabilities : single;
      answer.prediction_set = {
        level: level,
        classes: predictionSet(fittedOn, sets, level).map(function (j) {
          return classes[j];
        }),
      };
    }
    var ood = config.ood;
    if (ood) {
      var score = ood.method === "energy" ? -logsumexp(first.logits) : mahalanobis(first.features, state.reference);
      if (ood.scale) score = (score - ood.scale[0]) / ood.scale[1]; // in validation units, as the threshold is
      answer.none_of_these = { flag: score > ood.threshold, score: score, method: ood.method };
    }
    return answer;
  }

  var api = {
    classify: classify,
    model: model,
    modelPixels: modelPixels,
    centerSquare: centerSquare,
    _resample: resample,
    predictionSet: predictionSet,
    softmax: softmax,
  };
  root.flora = api;
  root.floraClassify = classify;
  if (typeof module !== "undefined" && module.exports) module.exports = api;
})(typeof window !== "undefined" ? window : globalThis);
