import pytest
from testkit import make_chip, make_cost

from tokenfab.cost.collectives import bus_factor, collective_name, estimate_collective, steps
from tokenfab.cost.profile import CollectiveParams
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.hardware.catalog import system_of_chip

pytestmark = pytest.mark.unit


def test_nccl_bus_factors():
    assert bus_factor("all_reduce", 8) == pytest.approx(2 * 7 / 8)
    assert bus_factor("all_gather", 4) == pytest.approx(3 / 4)
    assert steps("all_reduce", 8) == 14


def test_ring_allreduce_hand_computed():
    # 8 devices, 100 GB/s per direction, 1 GB message: 1.75 GB of bus bytes at 50% -> 35 ms, + 14 steps x 5 us
    p = CollectiveParams(small_latency_s=1.0, small_bus_eff=0.01, latency_s=10e-6, bus_eff=0.5, per_step_latency_s=5e-6)
    chip = make_chip(link=100e9)
    cc = make_cost(chip, coll=p)
    c = estimate_collective(cc, system_of_chip(chip, 8), "all_reduce", 8, 1e9)
    assert c.time_s == pytest.approx(14 * 5e-6 + 10e-6 + 1.75e9 / 50e9)
    assert c.bound == "network" and c.roofline_s == pytest.approx(1.75e9 / 100e9)


def test_small_messages_take_the_low_latency_protocol():
    p = CollectiveParams(small_latency_s=2e-6, small_bus_eff=0.1, latency_s=20e-6, bus_eff=0.9, per_step_latency_s=0.0)
    chip = make_chip(link=100e9)
    cc = make_cost(chip, coll=p)
    small = estimate_collective(cc, system_of_chip(chip, 2), "all_reduce", 2, 1e3)
    assert small.time_s == pytest.approx(2e-6 + 1e3 / 10e9)


def test_multinode_allreduce_is_hierarchical_and_slower():
    chip = make_chip(link=100e9)
    cc = make_cost(chip)
    one_node = estimate_collective(cc, system_of_chip(chip, 8), "all_reduce", 8, 1e9)
    two_nodes = estimate_collective(cc, system_of_chip(chip, 16), "all_reduce", 16, 1e9)
    assert two_nodes.time_s > one_node.time_s


def test_names_and_errors(ideal_cost):
    assert collective_name("allreduce") == "all_reduce" and collective_name("all-to-all") == "all_to_all"
    with pytest.raises(UnknownNameError):
        collective_name("broadcast")
    with pytest.raises(InvalidInputError):
        estimate_collective(ideal_cost, system_of_chip(ideal_cost.chip, 8), "all_reduce", 16, 1e6)
