"""Bad plan input gives one-line TokenfabErrors (the CLI turns them into exit code 2)."""

import copy

import pytest
import yaml

from tokenfab.errors import DataFileError, TokenfabError, InvalidInputError, UnknownNameError
from tokenfab.fleet import PlanSpec, load_plan, parse_plan, plan_fleet

pytestmark = pytest.mark.unit


@pytest.fixture
def _with(plan_dict):
    """_with(**top_level_changes) -> an edited copy of the tiny plan mapping."""

    def edit(**changes):
        data = copy.deepcopy(plan_dict)
        data.update(changes)
        return data

    return edit


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and message
    return message


def test_unknown_chip_names_the_nearest_catalog_chips(_with):
    data = _with(options=[{"name": "x", "chip": "h100-sxn", "price": 1000}])
    with pytest.raises(UnknownNameError) as info:
        parse_plan(data)
    assert "did you mean h100-sxm" in _one_line(info.value)


def test_negative_supply_is_rejected(_with):
    data = _with(options=[{"name": "a", "price": 1000, "supply": {"p1": 10, "p2": -5}}])
    with pytest.raises(DataFileError) as info:
        parse_plan(data)
    message = _one_line(info.value)
    assert "supply of option 'a'" in message and "p2" in message and "negative" in message


def test_demand_for_an_undefined_period(_with):
    data = _with()
    data["models"][0]["tokens_per_s"] = {"p1": 100, "p3": 200}
    with pytest.raises(UnknownNameError) as info:
        parse_plan(data)
    message = _one_line(info.value)
    assert "'p3'" in message and "demand of model 'm'" in message


def test_step_function_needs_the_first_period(_with):
    data = _with()
    data["models"][0]["tokens_per_s"] = {"p2": 200}
    with pytest.raises(DataFileError, match="first period 'p1' must be listed"):
        parse_plan(data)


def test_scenario_naming_an_unknown_option(_with):
    data = _with(scenarios=[{"name": "cut", "unavailable": [{"options": ["aa"]}]}])
    with pytest.raises(UnknownNameError, match="did you mean a"):
        parse_plan(data)


def test_cut_off_period_must_exist(_with):
    data = _with(scenarios=[{"name": "cut", "unavailable": [{"options": ["a"], "from_period": "2027"}]}])
    with pytest.raises(UnknownNameError, match="period"):
        parse_plan(data)


def test_probabilities_must_sum_to_one(_with):
    data = _with(scenarios=[{"name": "s1", "probability": 0.5}, {"name": "s2", "probability": 0.2}])
    with pytest.raises(DataFileError, match="sum to 1"):
        parse_plan(data)


def test_foreign_price_needs_an_exchange_rate(_with):
    data = _with(currency="CNY", options=[{"name": "a", "price": {"value": 10, "currency": "USD"}}])
    with pytest.raises(DataFileError, match="USD -> CNY"):
        parse_plan(data)


def test_capacity_row_for_an_unknown_model(_with):
    data = _with()
    data["capacity"].append(
        {"chip": "a", "model": "qwen3-32", "tokens_per_s_per_chip": 1, "avg_power_w_per_chip": 1, "source": "t"}
    )
    with pytest.raises(UnknownNameError, match="model"):
        parse_plan(data)


def test_duplicate_names_and_unknown_fields(_with):
    with pytest.raises(DataFileError, match="repeated: a"):
        parse_plan(_with(options=[{"name": "a", "price": 1}, {"name": "a", "price": 2}]))
    with pytest.raises(DataFileError, match="budgett"):
        parse_plan(_with(budgett={"total": 1}))


def test_max_capacity_needs_a_budget(_with):
    with pytest.raises(DataFileError, match="needs a budget"):
        parse_plan(_with(objective="max_capacity"))


def test_missing_capacity_without_a_provider(plan_dict, make_plan):
    spec = make_plan(capacity=plan_dict["capacity"][:1])
    with pytest.raises(InvalidInputError, match="no capacity for chip 'b'"):
        plan_fleet(spec)


def test_existing_fleet_above_the_power_limit(make_plan):
    spec = make_plan(
        options=[{"name": "a", "price": 1000, "existing_units": 1000}, {"name": "b", "price": 1500}],
        limits={"facility_power_w": 1000.0},
    )
    with pytest.raises(InvalidInputError, match="existing fleet"):
        plan_fleet(spec)


def test_malformed_yaml(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("periods: [p1, p2\nmodels: x\n")
    with pytest.raises(DataFileError) as info:
        load_plan(path)
    assert "malformed YAML" in _one_line(info.value)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        load_plan(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(DataFileError, match="mapping"):
        load_plan(path)


def test_a_valid_file_round_trips(plan_dict, tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan_dict))
    spec = load_plan(path)
    assert isinstance(spec, PlanSpec)
    assert spec.models[0].slo.tpot_s == pytest.approx(0.05)  # tpot_ms converted to seconds


def test_every_input_error_is_an_tokenfab_error(_with):
    for bad in (_with(periods=["p1", "p1"]), _with(period_years=0), _with(models=[])):
        with pytest.raises(TokenfabError):
            parse_plan(bad)
