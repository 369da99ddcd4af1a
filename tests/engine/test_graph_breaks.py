"""An operator hears of it when the compiled step does not compile into one graph (a torch or library
version that traces it differently): it would run slower than it should, with nothing else to say so."""

from __future__ import annotations

import logging

import pytest
import torch

from engine.compiling import graph_breaks, warn_of_graph_breaks


def whole(x: torch.Tensor) -> torch.Tensor:
    return (x * 2).sin()


def broken(x: torch.Tensor) -> torch.Tensor:
    x = x * 2
    torch._dynamo.graph_break()  # as an untraceable call in the step would
    return x.sin()


@pytest.mark.parametrize("fn, warned", [(whole, False), (broken, True)])
def test_a_step_that_breaks_into_several_graphs_is_warned_of(fn, warned, caplog) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="eager")  # Dynamo's tracing, which finds the breaks; no kernels built
    before = graph_breaks()
    with caplog.at_level(logging.WARNING, logger="engine.compiling"):
        compiled(torch.ones(4))
        breaks = warn_of_graph_breaks(before, "The step for 64x64, 8 cutouts, one job")
    assert (breaks > 0) is warned
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        (message,) = messages
        assert message.startswith("The step for 64x64, 8 cutouts, one job broke into several graphs (1 graph break")
        assert "graph_break()" in message and "torch version" in message
    else:
        assert messages == []
