"""Your own (x, y) points: every check on the CSV, the sine case on uploaded data, and the
page's upload (a bad file is a message; the page keeps working)."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from core import points, registry, runner
from core.settings import SettingError

SINE = registry.get("sine")


def csv_of(xs, ys, header="x,y"):
    rows = [header] if header else []
    return "\n".join(rows + [f"{x},{y}" for x, y in zip(xs, ys, strict=True)]).encode()


def test_a_good_file_with_or_without_header():
    xs = np.linspace(0, 1, 50)
    pts = points.parse_csv(csv_of(xs, xs**2))
    assert len(pts) == 50 and pts[3] == pytest.approx((xs[3], xs[3] ** 2))
    assert points.parse_csv(csv_of(xs, xs**2, header=None)) == pts


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x,y\n", "no data rows"),
        (b"1,2,3\n4,5,6\n", "line 1 has 3 columns; expected exactly 2"),
        (b"x,y\n1,2\n3,abc\n", "line 3 is not two numbers"),  # lines as a person counts them: the header is 1
        (b"x,y\n\n1,2\n3,abc\n", "line 4 is not two numbers"),  # blank lines count too
        (b"x,y\n\n1,2\n\n3,abc\n", "line 5 is not two numbers"),  # blank lines count,
        (b"1,2\n3,inf\n", "line 2 has a value that is not finite"),
        (b"1,2\nnan,3\n", "line 2 has a value that is not finite"),
        (b"\xff\xfe\x00binary", "not UTF-8 text"),
        (b"1,2\n" * 600_000, "MB; at most 1 MB"),
    ],
)
def test_each_bad_file_is_a_clear_message(data, message):
    with pytest.raises(SettingError) as e:
        points.parse_csv(data)
    assert str(e.value).startswith("points: ") and message in str(e.value)


def test_too_few_distinct_x_values_is_refused():
    config = dataclasses.replace(SINE.presets["fixed"], points=((1.0, 2.0),) * 40 + ((2.0, 3.0),))
    assert SINE.errors(config) == ["points: 2 distinct x values; at least 10 are needed"]


def test_the_cli_reads_a_csv_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINIC_ALLOWED_ROOTS", str(tmp_path))
    f = tmp_path / "p.csv"
    f.write_bytes(csv_of(range(20), range(20)))
    config = SINE.configure("fixed", {"points": str(f), "steps": "10"})
    assert len(config.points) == 20
    with pytest.raises(SettingError, match="is not a file"):
        SINE.configure("fixed", {"points": str(tmp_path / "missing.csv")})


def test_sine_trains_on_uploaded_points(cpu):
    x = np.linspace(-3, 3, 300)
    config = dataclasses.replace(SINE.presets["fixed"], points=tuple(zip(x, np.abs(x), strict=True)), steps=2000)
    result = runner.execute(SINE, config, cpu)
    fit = result.frames["fit"]
    assert fit["x"].min() == pytest.approx(-3) and fit["x"].max() == pytest.approx(3)
    assert math.isnan(result.metrics["rmse_vs_truth"])  # no known truth for your own data
    assert result.metrics["final_loss"] < 1e-3  # |x| is easy with biases
    assert torch.equal(torch.tensor(config.points)[:, 0].float(), torch.tensor(x).float())


def test_the_page_takes_an_upload_and_survives_a_bad_one():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
    at.switch_page(SINE.page)
    at.query_params.update({"preset": "fixed", "steps": "200"})
    at.run()
    x = np.linspace(0, 4, 100)
    at.get("file_uploader")[0].upload("mine.csv", csv_of(x, np.cos(x)), "text/csv")
    at.run()
    assert not at.exception and not at.error
    assert "Your uploaded points are not part of the page's link." in [c.value for c in at.caption]
    at.get("file_uploader")[0].set_value(("bad.csv", b"x,y\n1,2\n3,abc\n", "text/csv"))
    at.run()
    assert not at.exception
    assert any("bad.csv: points: line 3 is not two numbers" in e.value for e in at.error)
    assert len(at.get("vega_lite_chart")) >= 5  # the page kept working


def test_the_poly_page_fits_your_points_and_refuses_too_few_distinct_x():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=300)
    at.switch_page(registry.get("poly").page)
    at.query_params.update({"preset": "fixed", "epochs": "300"})
    at.run()
    x = np.linspace(-2, 6, 40)
    y = np.cos(x)
    at.get("file_uploader")[0].upload("mine.csv", csv_of(x, y), "text/csv")
    at.run()
    assert not at.exception and not at.error
    captions = " ".join(c.value for c in at.caption)
    assert "Fitting your 40 points" in captions and "Your uploaded points are not part of the page's link." in captions
    titles = [json.loads(c.proto.spec)["title"]["text"] for c in at.get("vega_lite_chart")]
    assert titles[0] == "Your points, fitted polynomial"
    # the least-squares loss shown is polyfit's on your points (mean of squares, as `fixed`)
    sse = np.mean((np.polyval(np.polyfit(x, y, 4), x) - y) ** 2)
    assert next(m for m in at.metric if m.label == "Least-squares loss").value == f"{sse:.4g}"
    # three distinct x cannot determine five coefficients: a message, and the page goes on with your 40 points
    few = csv_of([0, 0, 1, 1, 2, 2], [1, 2, 3, 4, 5, 6])
    at.get("file_uploader")[0].set_value(("few.csv", few, "text/csv"))
    at.run()
    assert not at.exception
    assert any(
        "few.csv: points: 3 distinct x values; at least 5 are needed for the 5 coefficients" in e.value
        for e in at.error
    )
    assert "Fitting your 40 points" in " ".join(c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) >= 5
