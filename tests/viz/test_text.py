"""Tokens coloured by attribution: HTML (notebooks) and a matplotlib figure (files)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xaijax import errors, viz

SPAN = re.compile(
    r'<span data-score="([^"]+)"[^>]*background:rgb\((\d+),(\d+),(\d+)\)[^>]*>([^<]*)<'
)


def spans(page: str) -> list[tuple[str, float, np.ndarray]]:
    return [
        (token, float(score), np.array([int(r), int(g), int(b)]))
        for score, r, g, b, token in SPAN.findall(page)
    ]


def test_html_colours_tokens_by_the_sign_of_their_score():
    tokens = ["a", "great", "awful", "<b>film</b>"]
    page = viz.text_html(tokens, np.array([0.0, 2.0, -1.0, 0.5]))
    got = spans(page)
    assert [t for t, _, _ in got] == ["a", "great", "awful", "&lt;b&gt;film&lt;/b&gt;"]
    (_, _, zero), (_, _, pos), (_, _, neg), (_, _, half) = got
    assert np.abs(zero - 247).max() <= 2  # white-ish: the centre of the diverging scale
    assert pos[0] > pos[2] + 50 and neg[2] > neg[0] + 50  # red for +, blue for -
    assert pos.sum() < half.sum() < zero.sum()  # stronger score, stronger colour
    assert page._repr_html_() == str(page) and "linear-gradient" in page  # legend
    # -1 and +1 (scaled) are the two ends.
    ends = spans(viz.text_html(["x", "y"], np.array([-3.0, 3.0])))
    assert ends[0][2].tolist() == [5, 48, 97] and ends[1][2].tolist() == [103, 0, 31]


def test_html_batches_are_scaled_per_sequence():
    page = viz.text_html(
        [["a", "b"], ["c", "d", "e"]], [np.array([1.0, 0.5]), np.array([100.0, 50.0, 0.0])]
    )
    got = spans(page)
    assert [t for t, _, _ in got] == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(got[0][2], got[2][2])  # each sequence's max: same colour
    np.testing.assert_array_equal(got[1][2], got[3][2])
    # A one-signed batch uses the white-to-red half.
    assert all(c[0] >= c[2] for _, _, c in got)
    same = viz.text_html([["a", "b"]], np.array([[1.0, 0.5]]))
    assert [(t, v, c.tolist()) for t, v, c in spans(same)] == [
        (t, v, c.tolist()) for t, v, c in got[:2]
    ]


def test_text_figure_uses_the_same_sign_colours():
    fig = viz.show_text(["good", "bad", "so"], np.array([1.0, -1.0, 0.0]), titles=["review"])
    texts = {t.get_text(): t for t in fig.axes[0].texts}
    assert set(texts) == {"good", "bad", "so", "review"}
    good = texts["good"].get_bbox_patch().get_facecolor()
    bad = texts["bad"].get_bbox_patch().get_facecolor()
    assert good[0] > good[2] and bad[2] > bad[0]
    assert fig.axes[1].get_xlim() == (-1.0, 1.0)  # the colour bar


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: viz.text_html("a b", np.ones(2)), errors.InvalidArgumentError, "one string"),
        (lambda: viz.text_html(["a", "b"], np.ones(3)), errors.InputShapeError, "2 tokens"),
        (lambda: viz.text_html(["a"], np.ones((1, 1, 1))), errors.InputShapeError, "[L]"),
        (lambda: viz.text_html(["a"], np.array([np.nan])), errors.NonFiniteInputError, "NaN"),
        (lambda: viz.text_html(["a"], np.ones(1), sign="up"), errors.InvalidArgumentError, "sign"),
        (lambda: viz.show_text(["a"], np.ones(1), width=2), errors.InvalidArgumentError, "width"),
        (
            lambda: viz.show_text(["a"], np.ones(1), fontsize=0),
            errors.InvalidArgumentError,
            "fontsize",
        ),
        (
            lambda: viz.show_text([["a"], ["b"]], np.ones((2, 1)), titles="xy"),
            errors.InvalidArgumentError,
            "list of strings",
        ),
        (
            lambda: viz.text_html(["a"], np.ones(1), titles=7),
            errors.InvalidArgumentError,
            "list of strings",
        ),
        (
            lambda: viz.text_html([["a"], ["b"]], np.ones((3, 1))),
            errors.InputShapeError,
            "3 score sequence(s) for 2",
        ),
    ],
)
def test_bad_text_inputs_raise_named_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
