"""Guidance combinations against hand-computed numbers."""

import pytest
import torch

from addp_agent.engine.guidance import correctional_guidance, dual_guidance


def const(*values):
    """A (B, 1, 1, 1) tensor with one value per sample."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 1, 1)


def test_dual_guidance_matches_instructpix2pix_formula():
    # ε = ε_u + s_T(ε_t − ε_i) + s_I(ε_i − ε_u) = 0.5 + 3(2 − 1) + 1.5(1 − 0.5) = 4.25
    out = dual_guidance(const(2.0), const(1.0), const(0.5), text_scale=3.0, image_scale=1.5)
    assert out.item() == pytest.approx(4.25)


def test_additive_one_term_per_correction_with_per_sample_weights():
    eps_t, eps_i, eps_u = const(2.0, 2.0), const(1.0, 1.0), const(0.5, 0.5)
    corrections = [const(1.5, 0.0), const(3.0, 3.0)]
    weights = torch.tensor([[1.0, 2.0], [0.5, 0.0]], dtype=torch.float64)
    out = correctional_guidance(eps_t, eps_i, eps_u, corrections, weights, 3.0, 1.5, "additive")
    # sample 0: 4.25 + 1·(2 − 1.5) + 2·(2 − 3) = 2.75 ; sample 1: 4.25 + 0.5·(2 − 0) + 0 = 5.25
    assert out.flatten().tolist() == pytest.approx([2.75, 5.25])


def test_replace_puts_the_weighted_mean_correction_in_the_null_prompts_place():
    eps_t, eps_i, eps_u = const(2.0, 2.0), const(1.0, 1.0), const(0.5, 0.5)
    corrections = [const(1.5, 9.0), const(3.0, 9.0)]
    weights = torch.tensor([[1.0, 3.0], [0.0, 0.0]], dtype=torch.float64)
    out = correctional_guidance(eps_t, eps_i, eps_u, corrections, weights, 3.0, 1.5, "replace")
    # sample 0: ε̄_c = (1·1.5 + 3·3)/4 = 2.625; ε = 0.5 + 1.5(1 − 0.5) + 3(2 − 2.625) = -0.625
    # sample 1 has no correction: plain dual guidance = 4.25
    assert out.flatten().tolist() == pytest.approx([-0.625, 4.25])


def test_replace_is_the_papers_formula_only_when_the_image_branch_equals_the_correction():
    # s_I = 1: replace = ε_i + s_T(ε_t − ε_c); paper's (1+w)ε_t − wε_c with w = s_T − 1 differs by ε_i − ε_c
    eps_t, eps_i, eps_c = const(2.0), const(1.1), const(0.8)
    out = correctional_guidance(eps_t, eps_i, const(0.1), [eps_c], torch.ones(1, 1, dtype=torch.float64), 3.0, 1.0,
                                "replace")
    assert out.item() == pytest.approx(1.1 + 3.0 * (2.0 - 0.8))  # 4.7
    paper_with_w = (1 + 2.0) * 2.0 - 2.0 * 0.8  # 4.4
    assert out.item() - paper_with_w == pytest.approx(1.1 - 0.8)


def test_paper_form_by_hand_with_distinct_branches():
    eps_t, eps_i, eps_u = const(2.0, 2.0), const(1.0, 1.0), const(0.5, 0.5)
    corrections = [const(1.5, 7.0), const(3.0, 7.0)]
    weights = torch.tensor([[1.0, 0.25], [0.0, 0.0]], dtype=torch.float64)
    out = correctional_guidance(eps_t, eps_i, eps_u, corrections, weights, 3.0, 1.5, "paper")
    # ε̂(D) = 4.25; ε̂(D⁻_1) = 0.5 + 1.5·0.5 + 3(1.5 − 1) = 2.75; ε̂(D⁻_2) = 0.5 + 0.75 + 3(3 − 1) = 7.25
    # sample 0: (1 + 1.25)·4.25 − 1·2.75 − 0.25·7.25 = 5.0 ; sample 1 has no correction: 4.25
    assert out.flatten().tolist() == pytest.approx([5.0, 4.25])
    one = correctional_guidance(eps_t[:1], eps_i[:1], eps_u[:1], [corrections[0][:1]],
                                torch.ones(1, 1, dtype=torch.float64), 3.0, 1.5, "paper")
    assert one.item() == pytest.approx(2 * 4.25 - 2.75)  # 5.75 = 4.25 + s_T·w·(2 − 1.5)


def test_paper_form_is_the_papers_formula_at_unit_scales():
    # s_T = s_I = 1: ε̂(D) = ε_t, so ε = (1 + w)ε_t − wε_c, whatever ε_i and ε_u are
    eps_t, eps_i, eps_u, eps_c = const(2.0), const(1.3), const(-0.4), const(0.8)
    out = correctional_guidance(eps_t, eps_i, eps_u, [eps_c], torch.full((1, 1), 0.7, dtype=torch.float64), 1.0, 1.0,
                                "paper")
    assert out.item() == pytest.approx(1.7 * 2.0 - 0.7 * 0.8)


def test_paper_form_is_the_extrapolation_of_dual_guided_predictions():
    torch.manual_seed(0)
    eps_t, eps_i, eps_u, c1, c2 = (torch.randn(3, 4, 5, 5, dtype=torch.float64) for _ in range(5))
    weights = torch.tensor([[1.0, 0.5], [2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    out = correctional_guidance(eps_t, eps_i, eps_u, [c1, c2], weights, 2.5, 1.3, "paper")
    w = weights.view(3, 2, 1, 1, 1)

    def guided(text):
        return dual_guidance(text, eps_i, eps_u, 2.5, 1.3)

    expected = (1 + w.sum(1)) * guided(eps_t) - w[:, 0] * guided(c1) - w[:, 1] * guided(c2)
    torch.testing.assert_close(out, expected)
    additive = correctional_guidance(eps_t, eps_i, eps_u, [c1, c2], 2.5 * weights, 2.5, 1.3, "additive")
    torch.testing.assert_close(out, additive)  # paper = additive with every weight scaled by s_T
    assert (out - correctional_guidance(eps_t, eps_i, eps_u, [c1, c2], weights, 2.5, 1.3, "additive")).abs().max() > 0.1


def test_no_corrections_is_dual_guidance_and_bad_mode_is_refused():
    args = (const(2.0), const(1.0), const(0.5))
    assert correctional_guidance(*args, [], torch.zeros(1, 0), 3.0, 1.5).item() == pytest.approx(4.25)
    with pytest.raises(ValueError, match="unknown correction mode"):
        correctional_guidance(*args, [const(1.0)], torch.ones(1, 1), 3.0, 1.5, "subtract")
    with pytest.raises(ValueError, match="weights"):
        correctional_guidance(*args, [const(1.0)], torch.ones(1, 2), 3.0, 1.5)
