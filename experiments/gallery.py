"""The README's gallery: one figure per kind of explanation, drawn with ``xaijax.viz``.

Trains (or restores from ``out/checkpoints``) three zoo models briefly on xaijax's synthetic
benchmark (VGG-like on images, the 3-D CNN on clips, the 1-D CNN on token sequences) and writes
to ``experiments/results/gallery/``:

- ``superpixels.png``: GWS and LIME scores of SLIC superpixels, boundaries and the top segments;
- ``fixations.png``: CNN Fixations as points, their heat map and the box around them;
- ``video.png``: Integrated Gradients on a clip, one panel per frame;
- ``text.png``: IG on the embedding layer of the text model, tokens coloured by attribution.

The demo's figure (``make demo``: every image method side by side, signed maps on a diverging
scale) is the gallery's first item; it is not redrawn here.

Command (about 3 minutes on the 2-core CPU VM from an empty checkpoint cache, under 1 minute
from a warm one):

    .venv/bin/python experiments/gallery.py

All numbers and pictures are on the synthetic benchmark, with small models trained here.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import xaijax
from xaijax import fixations, models, segmentation, superpixels, surrogates, training, viz
from xaijax.data import synthetic


def _train(name: str, task: str, key: str, steps: int, num_train: int, lr: float):
    make = {"image": synthetic.make_images, "video": synthetic.make_videos}.get(
        task, synthetic.make_texts
    )
    train = make(num_train, seed=0, split="train")
    net = models.get_model(name, int(train["label"].max()) + 1)
    result = training.train_or_restore(
        f"gallery-{name}",
        net,
        {key: train[key], "label": train["label"]},
        input_key=key,
        steps=steps,
        batch_size=32 if task != "text" else 64,
        learning_rate=lr,
        seed=0,
        progress=False,
    )
    return net, result.params


def superpixel_figure(out: pathlib.Path) -> None:
    net, params = _train("vgg", "image", "image", 300, 6000, 2e-3)
    apply_fn = models.apply_fn(net)
    data = synthetic.make_images(2, seed=1, split="test")
    x = jnp.asarray(data["image"])
    segments = segmentation.slic(approx_segments=30, num_segments=48)(x)
    gws = superpixels.gws(xaijax.gradient_x_input(apply_fn), "sum", num_segments=48)
    probability = xaijax.model(apply_fn, score="probability")
    lime = surrogates.lime(probability, num_segments=48, num_samples=1000)
    g = np.asarray(gws(params, x, segments=segments))
    c = np.asarray(lime(params, x, segments=segments, key=jax.random.key(0)).coefficients)
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(12, 6.2), layout="constrained")
    axes = fig.subplots(2, 3)
    for row in range(2):
        img, seg = np.asarray(x[row]), np.asarray(segments[row])
        viz.show_segments(img, seg, title="SLIC superpixels", ax=axes[row, 0], colorbar=False)
        viz.show_segments(img, seg, g[row], title="GWS: gradient x input, sum", ax=axes[row, 1])
        viz.show_segments(
            img, seg, c[row], top_k=5, title="LIME (1000 samples): top 5", ax=axes[row, 2]
        )
    fig.suptitle("Superpixel scores on two synthetic test images (zoo VGG, 300 steps)")
    viz.save_png(out / "superpixels.png", fig, dpi=90)


def fixation_figure(out: pathlib.Path) -> None:
    net, params = _train("vgg", "image", "image", 300, 6000, 2e-3)
    apply_fn = models.apply_fn(net)
    data = synthetic.make_images(3, seed=2, split="test")
    x = jnp.asarray(data["image"])
    points = np.asarray(fixations.fixations(apply_fn)(params, x))  # [B, H, W] bool
    heat = np.asarray(fixations.heatmap(jnp.asarray(points)))
    boxes = np.asarray(fixations.boxes(jnp.asarray(points)))
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(12, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for i in range(3):
        ys, xs = np.nonzero(points[i])
        viz.show_boxes(
            np.asarray(x[i]),
            boxes[i : i + 1],
            points=np.stack([ys, xs], axis=1),
            maps=heat[i],
            labels=["fixations' box"],
            title=f"class {int(data['label'][i])}: {len(ys)} fixations",
            ax=axes[i],
        )
    fig.suptitle("CNN Fixations (backtracked forward pass, no gradient): points, heat map, box")
    viz.save_png(out / "fixations.png", fig, dpi=90)


def video_figure(out: pathlib.Path) -> None:
    net, params = _train("video3d", "video", "video", 280, 3000, 3e-3)
    apply_fn = models.apply_fn(net)
    clip = jnp.asarray(synthetic.make_videos(1, seed=3, split="test")["video"])
    ig = xaijax.integrated_gradients(apply_fn, steps=16, chunk_size=4)(params, clip)
    fig = viz.show_video(
        np.asarray(clip[0]),
        np.asarray(ig[0]),
        max_frames=8,
        title=(
            "Integrated Gradients on a synthetic clip (zoo 3-D CNN): signed, "
            "one colour scale for the whole clip"
        ),
    )
    viz.save_png(out / "video.png", fig, dpi=90)


def text_figure(out: pathlib.Path) -> None:
    net, params = _train("text1d", "text", "tokens", 400, 4000, 3e-3)
    texts = synthetic.make_texts(4, seed=4, split="test")
    tokens = jnp.asarray(texts["tokens"])
    lig = xaijax.at_layer(xaijax.integrated_gradients, xaijax.from_linen(net), "embed")
    scores = np.asarray(lig(params, tokens))
    key = np.asarray(texts["span_mask"]) > 0  # the planted key 3-gram, shown in brackets
    words = [
        [f"[t{int(t)}]" if k else f"t{int(t)}" for t, k in zip(row, keys, strict=True)]
        for row, keys in zip(np.asarray(tokens), key, strict=True)
    ]
    titles = [
        f"IG on the embedding layer: class {int(label)}, planted key 3-gram [in brackets] at "
        f"{int(start)}"
        for label, start in zip(texts["label"], texts["span"][:, 0], strict=True)
    ]
    fig = viz.show_text(words, scores, titles=titles, width=110)
    viz.save_png(out / "text.png", fig, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="experiments/results/gallery")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for make in (superpixel_figure, fixation_figure, video_figure, text_figure):
        start = time.perf_counter()
        make(out)
        print(f"{make.__name__}: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
