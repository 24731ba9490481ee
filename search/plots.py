"""Reliability diagrams (SPEC 9.4) as PNG files, drawn with Pillow.

Not matplotlib: the driver's writer draws one per finished trial while the trials train on the same cores, and
matplotlib's import and drawing cost an order of magnitude more CPU than Pillow's (benchmarks/RESULTS.md,
tracking_overhead). The study report's plots still use matplotlib.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

PANEL = (420, 400)  # pixels per split
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 34, 50  # margins around the plot area
ACCURACY, GAP = (76, 114, 176, 255), (221, 132, 82, 128)  # the gap bar is half transparent over the accuracy bar


def reliability_figure(bins_by_split: dict, path) -> None:
    """One panel per split: accuracy per confidence bin against the diagonal; the gap to the mean confidence of
    each non-empty bin is drawn over it."""
    splits = list(bins_by_split)
    image = Image.new("RGBA", (PANEL[0] * len(splits), PANEL[1]), "white")
    for i, split in enumerate(splits):
        _panel(image, i * PANEL[0], bins_by_split[split], f"{split} reliability")
    image.convert("RGB").save(path)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _panel(image: Image.Image, x_off: int, b: dict, title: str) -> None:
    x0, x1 = x_off + LEFT, x_off + PANEL[0] - RIGHT
    y0, y1 = TOP, PANEL[1] - BOTTOM

    def px(x: float, y: float) -> tuple[float, float]:
        return x0 + x * (x1 - x0), y1 - y * (y1 - y0)

    bars = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw, over = ImageDraw.Draw(image), ImageDraw.Draw(bars)
    edges = b["edges"]
    inset = (edges[1] - edges[0]) * 0.025
    for lo, hi, acc, conf, n in zip(edges[:-1], edges[1:], b["accuracy"], b["confidence"], b["count"]):
        left, right = lo + inset, hi - inset
        if acc > 0:
            draw.rectangle([*px(left, acc), *px(right, 0)], fill=ACCURACY, outline="black")
        if n and conf != acc:
            (ax, ay), (bx, by) = px(left, max(acc, conf)), px(right, min(acc, conf))
            over.rectangle([ax, ay, bx, by], fill=GAP, outline=(0, 0, 0, 160))
    image.alpha_composite(bars)
    for k in range(0, 40, 2):  # the diagonal, dashed
        draw.line([px(k / 40, k / 40), px((k + 1) / 40, (k + 1) / 40)], fill="black", width=1)
    draw.rectangle([x0, y0, x1, y1], outline="black")
    small, large = _font(12), _font(14)
    for k in range(6):
        v = k / 5
        tx, ly = px(v, 0)[0], px(0, v)[1]
        draw.line([tx, y1, tx, y1 + 4], fill="black")
        draw.text((tx, y1 + 6), f"{v:.1f}", fill="black", font=small, anchor="mt")
        draw.line([x0 - 4, ly, x0, ly], fill="black")
        draw.text((x0 - 6, ly), f"{v:.1f}", fill="black", font=small, anchor="rm")
    draw.text(((x0 + x1) / 2, y1 + 26), "confidence", fill="black", font=large, anchor="mt")
    draw.text(((x0 + x1) / 2, y0 - 8), title, fill="black", font=large, anchor="mb")
    label = Image.new("RGBA", (90, 20), (0, 0, 0, 0))
    ImageDraw.Draw(label).text((45, 10), "accuracy", fill="black", font=large, anchor="mm")
    label = label.rotate(90, expand=True)
    image.alpha_composite(label, (x_off + 4, int((y0 + y1) / 2 - label.height / 2)))
    for row, (name, colour) in enumerate((("accuracy", ACCURACY), ("gap", GAP))):  # the legend
        lx, ly = x0 + 8, y0 + 8 + row * 18
        shown = tuple(round(c * colour[3] / 255 + 255 * (1 - colour[3] / 255)) for c in colour[:3])  # on white
        draw.rectangle([lx, ly, lx + 22, ly + 11], fill=shown, outline="black")
        draw.text((lx + 28, ly + 6), name, fill="black", font=small, anchor="lm")
