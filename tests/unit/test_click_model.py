from __future__ import annotations

from embtune.demo.click_model import PositionBiasedClickModel


def test_same_seed_and_key_give_the_same_clicks() -> None:
    model = PositionBiasedClickModel(seed=7)
    shown = [f"d{i}" for i in range(10)]
    first = model.simulate("q1#0", shown, {"d0", "d4"})
    assert first == model.simulate("q1#0", shown, {"d0", "d4"})


def test_clicks_are_position_biased_and_mostly_relevant() -> None:
    model = PositionBiasedClickModel(seed=1)
    shown = [f"d{i}" for i in range(10)]
    top = deep = noise = 0
    for n in range(2000):
        clicks = model.simulate(f"s{n}", shown, {"d0", "d7"}).clicks
        top += "d0" in clicks
        deep += "d7" in clicks
        noise += sum(1 for c in clicks if c not in {"d0", "d7"})
    assert 0.9 < top / 2000 < 1.0  # rank 1 is always examined
    assert 0.08 < deep / 2000 < 0.16  # rank 8: examined 1/8 of the time
    assert noise / 2000 < 0.1


def test_irrelevant_only_when_nothing_relevant_was_shown() -> None:
    model = PositionBiasedClickModel(seed=3, p_mark_irrelevant=1.0, p_click_irrelevant=0.0)
    assert model.simulate("a", ["x", "y"], set()).irrelevant
    assert not model.simulate("b", ["x", "y"], {"y"}).irrelevant
