"""`explain`: where a run's model looked in a photo (Grad-CAM), for a class or a contrast of two."""

from __future__ import annotations

import argparse
import contextlib
import sys

from core.cli import store_of
from core.cli.output import EXIT_OK, emit_json, fail
from core.cli.results import not_evaluated_reason
from core.data.imaging import ImageError
from core.results.evaluation.explain import Explainer, Target, overlay, upsample


def register(sub, common: argparse.ArgumentParser) -> None:
    explain = sub.add_parser(
        "explain", parents=[common], help="a Grad-CAM heatmap of where a run's model looked in a photo"
    )
    explain.add_argument("run_id", metavar="RUN")
    explain.add_argument("image", metavar="IMAGE")
    what = explain.add_mutually_exclusive_group()
    what.add_argument(
        "--class", dest="class_name", metavar="NAME", help="the class to explain (default: the predicted one)"
    )
    what.add_argument("--contrast", metavar="A,B", help="what made it say A rather than B (signed: + for A, - for B)")
    explain.add_argument(
        "--map",
        choices=("auto", "last", "previous"),
        default="auto",
        help="the backbone block to explain: its last (the head's input), the one before it (a grid twice as fine), "
        "or auto: the last unless its grid is under 4x4 at the run's size (default)",
    )
    explain.add_argument("--out", metavar="PNG", help="write the photo with the heatmap over it")
    explain.add_argument("--json", action="store_true", help="the heatmap as a nested list, with its class and size")
    explain.set_defaults(handler=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    store = store_of(args)
    run = store.refresh(store.find(args.run_id))
    if not run.has_model:
        return fail(not_evaluated_reason(run))
    with contextlib.redirect_stdout(sys.stderr):
        explainer = Explainer(run)
        try:
            image = explainer.load(args.image)
        except ImageError as e:
            return fail(f"{args.image}: {e}")
        logits = explainer.logits(image)
        if args.contrast:
            names = [n.strip() for n in args.contrast.split(",")]
            if len(names) != 2 or names[0] == names[1]:
                return fail(f"--contrast takes two different classes as A,B. Received: {args.contrast!r}")
            target = Target(explainer.class_index(names[0]), explainer.class_index(names[1]))
        elif args.class_name:
            target = Target(explainer.class_index(args.class_name))
        else:
            target = Target(int(np.argmax(logits)))
        layer = {"auto": explainer.default_layer, "last": explainer.last_layer}.get(args.map, explainer.layers[-1])
        heatmap = explainer.explain(image, [target], layer=layer)[0]
    note = explainer.grid_note(layer)
    print(note, file=sys.stderr)
    values = upsample(heatmap.values, explainer.image_size)
    if args.out:
        from PIL import Image

        Image.fromarray(overlay(image, heatmap.values, signed=heatmap.signed)).save(args.out)
    classes = explainer.classes
    described = (
        f"{classes[target.cls]} rather than {classes[target.against]}" if target.contrast else classes[target.cls]
    )
    if args.json:
        emit_json(
            {
                "run_id": run.run_id,
                "image": args.image,
                "class": classes[target.cls],
                "contrast": [classes[target.cls], classes[target.against]] if target.contrast else None,
                "predicted": classes[int(np.argmax(logits))],
                "score": heatmap.score,
                "image_size": explainer.image_size,
                "map_size": list(heatmap.cam.shape),
                "layer": layer,
                "grid_note": note,
                "signed": heatmap.signed,
                "heatmap": np.round(values, 4).tolist(),
                "out": args.out,
            }
        )
        return EXIT_OK
    where = np.unravel_index(int(np.argmax(np.abs(values))), values.shape)
    print(
        f"{args.image}: {described} (logit {'difference ' if target.contrast else ''}{heatmap.score:.3f}); "
        f"predicted {classes[int(np.argmax(logits))]}; strongest at row {where[0]}, column {where[1]} "
        f"of {explainer.image_size} px (a {heatmap.cam.shape[0]}x{heatmap.cam.shape[1]} map)"
    )
    if args.out:
        print(f"overlay written to {args.out}")
    return EXIT_OK
