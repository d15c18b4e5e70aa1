"""The packed GRU: same states and gradients as nn.GRU on padded rows, and the packing layout it relies on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.data import EventLogSpec, load_store
from engine.model.datamodule import TrainCollate
from engine.model.encoder import EventEmbedding, GRUEncoder
from engine.model.features import N_NUMERIC
from engine.model.gru import Packing, gru_layer
from engine.model.module import CustomerEncoder


def test_packing_lays_out_valid_events_time_major_longest_first():
    packing = Packing.build(torch.tensor([2, 3, 1]), width=4)
    assert packing.batch_sizes == [3, 2, 1]
    assert packing.offsets == [0, 3, 5]
    assert packing.order.tolist() == [1, 0, 2]
    # step 0 of rows 1, 0, 2; step 1 of rows 1, 0; step 2 of row 1 (flat index = row * 4 + step)
    assert packing.flat.tolist() == [4, 0, 8, 5, 1, 6]
    assert packing.last.tolist() == [4, 5, 2]  # packed index of each row's last event, in row order
    assert packing.previous.tolist() == [0, 1, 3]


def _padded_reference(gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, _ = gru(x)
    return out, out[torch.arange(len(lengths)), lengths - 1]


@pytest.mark.parametrize("num_layers", [1, 2])
def test_states_and_gradients_match_nn_gru(num_layers):
    torch.manual_seed(0)
    gru = nn.GRU(6, 5, num_layers=num_layers, batch_first=True).double()
    encoder = GRUEncoder(dim=6)
    encoder.rnn = gru
    x = torch.randn(7, 9, 6, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([3, 9, 1, 9, 5, 2, 7])
    weights = torch.randn(7, 5, dtype=torch.double)

    state = encoder(x, lengths)
    _, expected = _padded_reference(gru, x, lengths)
    assert torch.allclose(state, expected, atol=1e-12)

    ours = torch.autograd.grad((state * weights).sum(), [x, *gru.parameters()])
    theirs = torch.autograd.grad((expected * weights).sum(), [x, *gru.parameters()])
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_every_packed_state_matches_and_passes_gradcheck():
    torch.manual_seed(1)
    gru = nn.GRU(4, 3, batch_first=True).double()
    x = torch.randn(5, 6, 4, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([6, 2, 4, 1, 6])
    packing = Packing.build(lengths, 6)
    params = (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)

    states = gru_layer(x.flatten(0, 1)[packing.flat], *params, packing)
    reference, _ = _padded_reference(gru, x, lengths)
    assert torch.allclose(states, reference.flatten(0, 1)[packing.flat], atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, *p: gru_layer(x.flatten(0, 1)[packing.flat], *p, packing),
                                    (x, *params))


def test_bf16_autocast_stays_close_to_float32():
    torch.manual_seed(2)
    gru = nn.GRU(32, 32, batch_first=True)
    encoder = GRUEncoder(dim=32)
    encoder.rnn = gru
    x = torch.randn(16, 20, 32)
    lengths = torch.randint(1, 21, (16,))
    _, expected = _padded_reference(gru, x, lengths)
    for native in (False, True):  # our recurrence, and the PackedSequence kernel (cuDNN's branch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            packing = Packing.build(lengths, 20)
            events = x.flatten(0, 1)[packing.flat].to(torch.bfloat16)  # as a Linear under autocast gives
            state = encoder.forward_packed(events, packing, native=native)
        assert state.dtype == torch.float32
        assert (state - expected).abs().max() < 0.02


def test_the_module_embeds_only_valid_events_and_ignores_padding():
    """A row's state does not depend on what lies past its length, nor on the batch's width."""
    torch.manual_seed(3)
    model = CustomerEncoder([4, 50, 10, 3], encoder=GRUEncoder, dim=16, out_dim=8).eval()
    cat = torch.randint(1, 3, (3, 10, 4))
    num = torch.randn(3, 10, N_NUMERIC)
    lengths = torch.tensor([10, 4, 7])
    with torch.no_grad():
        full = model({"cat": cat, "num": num, "lengths": lengths})
        noisy = cat.clone()
        noisy[1, 4:] = 2  # garbage in the padding of row 1
        narrow = model({"cat": noisy[1:2, :4], "num": num[1:2, :4], "lengths": lengths[1:2]})
        again = model({"cat": noisy, "num": num, "lengths": lengths})
    assert torch.allclose(full[1], narrow[0], atol=1e-6)
    assert torch.allclose(full, again, atol=1e-6)
    assert isinstance(model.embed, EventEmbedding)


def test_the_cudnn_branch_reads_the_same_states_as_the_cpu_recurrence():
    """The PackedSequence path (taken on CUDA) run on the CPU: same final and prefix states."""
    torch.manual_seed(4)
    encoder = GRUEncoder(dim=8, num_layers=2)
    lengths = torch.tensor([5, 2, 7, 1])
    packing = Packing.build(lengths, 7)
    x = torch.randn(int(lengths.sum()), 8)
    at = packing.index(torch.tensor([2, 0, 1]), torch.tensor([3, 4, 0]))
    for positions in (None, at):
        ours = encoder.forward_packed(x, packing, positions, native=False)
        cudnn = encoder.forward_packed(x, packing, positions, native=True)
        assert torch.allclose(ours, cudnn, atol=1e-6)


@pytest.mark.parametrize("forecast_weight,item_weight", [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)])
def test_every_parameter_is_trained_whatever_the_objectives(forecast_weight, item_weight, tiny_log):
    """DDP fails on parameters no loss reaches: a switched-off objective leaves no parameters behind."""
    store, _ = load_store(EventLogSpec(path=str(tiny_log)))
    collate = TrainCollate(store, n_slices=2, min_len=4, max_len=16, horizon_days=30 if forecast_weight else None,
                           forecast_max_len=32, spend_scale=1.0, forecast_samples=4)
    sizes = [len(store.vocabs[f]) for f in ("event_type", "item_id", "category", "channel")]
    model = CustomerEncoder(sizes, encoder=GRUEncoder, dim=16, out_dim=8, forecast_weight=forecast_weight,
                            item_weight=item_weight)
    model.log = lambda *args, **kwargs: None
    model.training_step(collate(list(range(16))), 0).backward()
    untouched = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert untouched == []
    # the forecasting head is fitted afterwards on frozen states (engine.model.head): DDP never sees it
    frozen = {name.split(".")[0] for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == ({"head", "log_prior"} if forecast_weight else set())
