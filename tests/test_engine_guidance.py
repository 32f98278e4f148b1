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


def test_replace_with_one_correction_is_the_papers_formula_without_image_term():
    # With s_I = 1 and ε_u cancelling: ε = ε_i + s_T(ε_t − ε_c) ; paper: (1+w)ε_t − wε_c when ε_i = ε_c, w = s_T − 1
    eps_t, eps_c = const(2.0), const(0.8)
    out = correctional_guidance(eps_t, eps_c, const(0.1), [eps_c], torch.ones(1, 1, dtype=torch.float64), 3.0, 1.0,
                                "replace")
    assert out.item() == pytest.approx((1 + 2.0) * 2.0 - 2.0 * 0.8)


def test_no_corrections_is_dual_guidance_and_bad_mode_is_refused():
    args = (const(2.0), const(1.0), const(0.5))
    assert correctional_guidance(*args, [], torch.zeros(1, 0), 3.0, 1.5).item() == pytest.approx(4.25)
    with pytest.raises(ValueError, match="unknown correction mode"):
        correctional_guidance(*args, [const(1.0)], torch.ones(1, 1), 3.0, 1.5, "subtract")
    with pytest.raises(ValueError, match="weights"):
        correctional_guidance(*args, [const(1.0)], torch.ones(1, 2), 3.0, 1.5)
