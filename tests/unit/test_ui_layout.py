"""The UI's pure parts: a run's job graph laid out in columns of `needs`, and an analysis
metric's chart."""

from __future__ import annotations

from conveyor.ui import charts, graph


def test_jobs_sit_in_the_column_of_their_longest_chain_of_needs():
    laid = graph.layout(
        ["compile", "unit", "lint", "package", "deploy"],
        {"unit": ["compile"], "lint": [], "package": ["unit", "lint"], "deploy": ["package"]},
    )
    at = {n.name: (n.x, n.y) for n in laid.nodes}
    column = graph.WIDTH + graph.GAP_X
    assert at["compile"][0] == at["lint"][0] == graph.PAD
    assert at["unit"][0] == graph.PAD + column
    assert at["package"][0] == graph.PAD + 2 * column  # after its longest chain
    assert at["deploy"][0] == graph.PAD + 3 * column
    assert at["lint"][1] > at["compile"][1]  # one under the other in the same column
    assert len(laid.edges) == 4
    assert laid.edges[0].path.startswith(f"M{graph.PAD + graph.WIDTH},")
    assert laid.width == 2 * graph.PAD + 4 * graph.WIDTH + 3 * graph.GAP_X
    assert graph.layout([], {}).nodes == ()


def test_a_chart_scales_both_slots_and_the_threshold_into_the_box():
    points = [charts.Point(0, 0.0, 0.0), charts.Point(5, 0.02, 0.01), charts.Point(10, 0.05, None)]
    drawn = charts.chart("error-rate", points, threshold=0.01)
    assert drawn.canary.startswith(f"M{float(charts.PAD)},") and drawn.canary.count("L") == 2
    assert drawn.stable.count("L") == 1  # the last point has no stable value
    assert abs(drawn.top - 0.055) < 1e-9  # the highest value, with room above
    bottom = charts.HEIGHT - charts.PAD
    assert drawn.threshold_y is not None and charts.PAD < drawn.threshold_y < bottom
    empty = charts.chart("p99", [charts.Point(0, None, None)], threshold=None)
    assert (empty.canary, empty.stable, empty.threshold_y) == ("", "", None)
