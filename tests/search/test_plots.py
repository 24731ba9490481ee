"""The reliability diagram: each bin's accuracy bar, and the gap to its mean confidence, where they belong."""

from PIL import Image

from search.plots import ACCURACY, BOTTOM, LEFT, PANEL, RIGHT, TOP, reliability_figure


def _pixel(image, panel, x, y):
    """The colour at (confidence x, accuracy y) of a panel's plot area."""
    x0, x1 = panel * PANEL[0] + LEFT, (panel + 1) * PANEL[0] - RIGHT
    y0, y1 = TOP, PANEL[1] - BOTTOM
    return image.getpixel((round(x0 + x * (x1 - x0)), round(y1 - y * (y1 - y0))))


def test_bars_and_gaps_land_where_the_bins_say(tmp_path):
    edges = [0.0, 0.25, 0.5, 0.75, 1.0]
    val = {"edges": edges, "accuracy": [0.0, 0.3, 0.6, 0.9], "confidence": [0.0, 0.4, 0.6, 0.8],
           "count": [0, 10, 20, 30]}
    test = {**val, "accuracy": [0.0, 0.1, 0.2, 0.3]}
    path = tmp_path / "reliability.png"
    reliability_figure({"val": val, "test": test}, path)
    image = Image.open(path).convert("RGB")
    assert image.size == (2 * PANEL[0], PANEL[1])  # one panel per split
    blue, white = ACCURACY[:3], (255, 255, 255)
    assert _pixel(image, 0, 0.375, 0.15) == blue and _pixel(image, 0, 0.375, 0.7) == white
    gap = _pixel(image, 0, 0.375, 0.35)  # bin 2 is overconfident: 0.3 accurate at 0.4 confidence
    assert gap not in (blue, white) and gap[0] > gap[2]  # orange over white
    assert _pixel(image, 0, 0.625, 0.55) == blue and _pixel(image, 0, 0.63, 0.65) == white  # no gap
    over = _pixel(image, 0, 0.875, 0.85)  # bin 4 is underconfident: the gap lies over its accuracy bar
    assert over not in (blue, white)
    assert _pixel(image, 0, 0.125, 0.05) == white  # the empty bin has no bar
    assert _pixel(image, 1, 0.875, 0.15) == blue and _pixel(image, 1, 0.875, 0.5) not in (blue, white)
