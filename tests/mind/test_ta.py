import torch

from mindcore.mind.ta import TeachingAssistant, mean_pool, meta_loss, select, uniform_weights


def test_scores_positive_shapes_and_synergy_switch():
    torch.manual_seed(0)
    feats = torch.randn(3, 8, 32)
    valid = torch.ones(3, 8, dtype=torch.bool)
    valid[1, 5:] = False
    valid[2] = False  # a question with no path must not produce NaN
    for synergy in (True, False):
        ta = TeachingAssistant(32, hidden=16, num_heads=4, num_score_heads=3, synergy=synergy)
        s = ta(feats, valid)
        assert s.shape == (3, 8) and (s > 0).all() and torch.isfinite(s).all()
        assert hasattr(ta, "attn") == synergy
    # with synergy a path's score depends on the other paths; without it, it does not
    ta = TeachingAssistant(32, hidden=16, synergy=True)
    f2 = feats.clone()
    f2[0, 1] = torch.randn(32) * 3
    assert (ta(feats)[0, 0] - ta(f2)[0, 0]).abs() > 1e-6
    ta = TeachingAssistant(32, hidden=16, synergy=False)
    torch.testing.assert_close(ta(feats)[0, 0], ta(f2)[0, 0])


def test_meta_loss_is_listwise_kl_and_learns_ranking():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    L = torch.tensor([[0.5, 1.0, 2.0]])
    v = torch.ones(1, 3, dtype=torch.bool)
    p, q = torch.softmax(s, -1), torch.softmax(-L, -1)
    torch.testing.assert_close(meta_loss(s, L, v), (p * (p / q).log()).sum())
    # invalid paths are excluded; a single valid path carries no signal
    v2 = torch.tensor([[True, True, False]])
    p2, q2 = torch.softmax(s[:, :2], -1), torch.softmax(-L[:, :2], -1)
    torch.testing.assert_close(meta_loss(s, L, v2), (p2 * (p2 / q2).log()).sum())
    assert meta_loss(s, L, torch.tensor([[True, False, False]])) == 0
    # training the TA on fixed losses makes it rank low-loss paths highest
    torch.manual_seed(0)
    feats = torch.randn(16, 4, 8)
    losses = feats[..., 0].abs() * 2
    ta = TeachingAssistant(8, hidden=16, num_heads=4)
    opt = torch.optim.Adam(ta.parameters(), lr=1e-2)
    valid = torch.ones(16, 4, dtype=torch.bool)
    first = meta_loss(ta(feats, valid), losses, valid).item()
    for _ in range(200):
        opt.zero_grad()
        loss = meta_loss(ta(feats, valid), losses, valid)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    agree = (ta(feats, valid).argmax(-1) == losses.argmin(-1)).float().mean()
    assert agree > 0.8


def test_select_threshold_and_softmax_over_kept():
    s = torch.tensor([[1.0, 0.69, 0.8, 2.0], [1.0, 1.0, 0.1, 0.2]], requires_grad=True)
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    alpha, kept = select(s, valid, beta=0.7, tau_s=1.0)
    assert kept.tolist() == [[True, False, True, False], [True, True, False, False]]
    want0 = torch.softmax(torch.tensor([1.0, 0.8]), -1)
    torch.testing.assert_close(alpha[0, [0, 2]], want0)
    assert alpha[0, 1] == 0 and alpha[0, 3] == 0
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2))
    assert not alpha.requires_grad
    u = uniform_weights(valid)
    torch.testing.assert_close(u[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0]))


def test_mean_pool_ignores_padding_and_is_detached():
    h = torch.randn(2, 5, 4, requires_grad=True)
    m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = mean_pool(h, m)
    torch.testing.assert_close(out[0], h[0, :3].mean(0).detach())
    assert not out.requires_grad
