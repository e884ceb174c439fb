"""BatchTopK crosscoder: exact batch top-k, gradients against a dense autograd reference, shared
decoders, FVE 1 on exactly reconstructable data, recovery of planted shared / A-only / B-only features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_moe.analysis.crosscoder import BatchTopKCrosscoder, batch_topk_positions
from lit_moe.analysis.crosscoder_metrics import CrosscoderEvaluation, feature_classes, fve


def test_batch_topk_keeps_exactly_b_times_k_of_the_largest_weighted_scores():
    torch.manual_seed(0)
    crosscoder = BatchTopKCrosscoder(2, 12, 256, k=5, num_shared=16)
    with torch.no_grad():
        crosscoder.w_dec_own_LMD.mul_(torch.rand(240, 1, 1) * 2)  # unequal decoder norms matter
    a_BMD = torch.randn(64, 2, 12)
    codes = crosscoder.encode(a_BMD)
    assert codes.values_N.numel() == 64 * 5
    assert int(codes.dense().count_nonzero()) == 64 * 5 and bool((codes.values_N > 0).all())
    with torch.no_grad():  # reference: dictionary_learning's flattened top-k, on decoder-norm-weighted scores
        pre_BL = ((a_BMD - crosscoder.b_dec_MD).reshape(64, -1) @ crosscoder.w_enc_IL + crosscoder.b_enc_L).relu()
        scores_BL = pre_BL * crosscoder.decoder_LMD().norm(dim=-1).sum(-1)
        expected = torch.zeros(64 * 256, dtype=torch.bool)
        expected[scores_BL.reshape(-1).topk(64 * 5).indices] = True
    assert torch.equal(codes.dense().reshape(-1) > 0, expected)
    assert torch.equal(codes.rows_N, codes.rows_N.sort().values)  # row-major


@pytest.mark.parametrize("cap", [1, 3, 40])
def test_batch_topk_positions_is_exact_whatever_the_row_cap(cap):
    scores_BL = torch.rand(32, 50, generator=torch.Generator().manual_seed(cap)) ** 6
    scores_BL[3] += 2.0  # one row holds far more than its share of the batch's top values
    rows_N, cols_N, _ = batch_topk_positions(scores_BL, 32 * 4, cap)
    assert rows_N.numel() == 128
    assert torch.equal(scores_BL[rows_N, cols_N].sort().values, scores_BL.reshape(-1).topk(128).values.sort().values)


def test_gradients_match_a_dense_autograd_reference():
    torch.manual_seed(1)
    crosscoder = BatchTopKCrosscoder(2, 16, 64, k=4, num_shared=8)
    reference = BatchTopKCrosscoder(2, 16, 64, k=4, num_shared=8)
    with torch.no_grad():
        crosscoder.b_dec_MD.normal_(std=0.1)
        crosscoder.b_enc_L.normal_(std=0.1)
    reference.load_state_dict(crosscoder.state_dict())
    a_BMD = torch.randn(32, 2, 16)
    recon_BMD, codes = crosscoder(a_BMD)
    dead_L = torch.arange(64) % 3 == 0
    loss = (recon_BMD - a_BMD).pow(2).sum() + crosscoder.auxiliary_loss(a_BMD, a_BMD - recon_BMD, dead_L, 6)
    loss.backward()
    x_BI = (a_BMD - reference.b_dec_MD).reshape(32, -1)
    pre_BL = (x_BI @ reference.w_enc_IL + reference.b_enc_L).relu()
    kept_BL = torch.zeros(32, 64, dtype=torch.bool)
    kept_BL[codes.rows_N, codes.cols_N] = True
    decoder_LI = reference.decoder_LMD().reshape(64, -1)
    recon_ref_BMD = ((pre_BL * kept_BL) @ decoder_LI).view(32, 2, 16) + reference.b_dec_MD
    residual_BI = (a_BMD - recon_ref_BMD).reshape(32, -1).detach()
    dead_pre_BL = torch.where(dead_L, pre_BL, torch.full_like(pre_BL, -1.0))
    aux_kept_BL = torch.zeros_like(kept_BL).scatter(1, dead_pre_BL.topk(6, dim=1).indices, True)
    aux_recon_BI = (pre_BL * aux_kept_BL) @ decoder_LI
    aux = (residual_BI - aux_recon_BI).pow(2).sum(-1).mean() / (residual_BI - residual_BI.mean(0)).pow(2).sum(-1).mean()
    ((recon_ref_BMD - a_BMD).pow(2).sum() + aux).backward()
    torch.testing.assert_close(recon_BMD, recon_ref_BMD)
    for (name, param), (_, ref_param) in zip(crosscoder.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(param.grad, ref_param.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_shared_features_keep_identical_decoders_through_training():
    torch.manual_seed(2)
    crosscoder = BatchTopKCrosscoder(2, 8, 32, k=3, num_shared=6)
    optimizer = torch.optim.Adam(crosscoder.parameters(), lr=1e-2)
    for _ in range(5):
        a_BMD = torch.randn(64, 2, 8) * torch.tensor([1.0, 3.0]).view(1, 2, 1)  # the models differ
        recon_BMD, _ = crosscoder(a_BMD)
        optimizer.zero_grad()
        (recon_BMD - a_BMD).pow(2).sum().backward()
        optimizer.step()
    decoder_LMD = crosscoder.decoder_LMD()
    assert torch.equal(decoder_LMD[:6, 0], decoder_LMD[:6, 1])
    assert not torch.allclose(decoder_LMD[6:, 0], decoder_LMD[6:, 1])
    assert torch.allclose(crosscoder.relative_decoder_norms()[:6], torch.full((6,), 0.5))


def test_fve_is_one_on_exactly_reconstructable_data():
    """±identity dictionary with k = M*D: every token is reconstructed exactly."""
    d_in, models = 6, 2
    crosscoder = BatchTopKCrosscoder(models, d_in, 2 * models * d_in, k=models * d_in, num_shared=0)
    eye_II = torch.eye(models * d_in)
    with torch.no_grad():
        crosscoder.w_dec_own_LMD.copy_(torch.cat([eye_II, -eye_II]).view(-1, models, d_in))
        crosscoder.w_enc_IL.copy_(torch.cat([eye_II, -eye_II]).t())
    a_BMD = torch.randn(200, models, d_in) * 3 + 1
    evaluation = CrosscoderEvaluation(models, d_in, crosscoder.dict_size, torch.arange(0), 1)
    with torch.no_grad():
        for chunk_BMD in a_BMD.split(50):
            recon_BMD, codes = crosscoder(chunk_BMD)
            evaluation.update(chunk_BMD, recon_BMD, codes, torch.arange(50))
    results = evaluation.results()
    torch.testing.assert_close(results["fve_M"], torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
    assert float(results["l0"]) == pytest.approx(models * d_in)
    # the running-sum FVE equals the float64 definition on imperfect reconstructions too
    noisy_BMD = a_BMD + 0.5 * torch.randn_like(a_BMD)
    error_M = (a_BMD - noisy_BMD).double().pow(2).sum((0, 2))
    spread_M = (a_BMD - a_BMD.mean(0)).double().pow(2).sum((0, 2))
    running = fve(error_M, a_BMD.double().sum(0), a_BMD.double().pow(2).sum((0, 2)), 200)
    torch.testing.assert_close(running, 1 - error_M / spread_M)


def _planted_data(num_tokens, generator, directions_FMD, p_active):
    active_BF = torch.rand(num_tokens, directions_FMD.shape[0], generator=generator) < p_active
    magnitude_BF = torch.rand(num_tokens, directions_FMD.shape[0], generator=generator) + 0.5
    return torch.einsum("bf,fmd->bmd", active_BF * magnitude_BF, directions_FMD)


def test_crosscoder_recovers_planted_shared_and_model_specific_features():
    generator = torch.Generator().manual_seed(0)
    d_in, shared, only_a, only_b = 24, 8, 8, 8
    directions_FMD = torch.zeros(shared + only_a + only_b, 2, d_in)
    unit = lambda n: F.normalize(torch.randn(n, d_in, generator=generator), dim=-1)  # noqa: E731
    directions_FMD[:shared] = unit(shared).unsqueeze(1)  # the same vector in both models
    directions_FMD[shared : shared + only_a, 0] = unit(only_a)
    directions_FMD[shared + only_a :, 1] = unit(only_b)
    torch.manual_seed(0)
    crosscoder = BatchTopKCrosscoder(2, d_in, 64, k=3, num_shared=8)
    optimizer = torch.optim.Adam(crosscoder.parameters(), lr=3e-3)
    for step in range(600):
        a_BMD = _planted_data(256, generator, directions_FMD, 3 / 24)
        recon_BMD, codes = crosscoder(a_BMD)
        loss = (recon_BMD - a_BMD).pow(2).sum((1, 2)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 300:
            crosscoder.update_threshold(codes, 0.99)
    learned_LI = F.normalize(crosscoder.decoder_LMD().detach().reshape(64, -1), dim=-1)
    planted_FI = F.normalize(directions_FMD.reshape(24, -1), dim=-1)
    best_F, match_F = (planted_FI @ learned_LI.t()).max(dim=1)
    assert (best_F > 0.9).float().mean() >= 0.8, best_F
    relative_L = crosscoder.relative_decoder_norms().detach()
    recovered = best_F > 0.9
    assert (relative_L[match_F[:8][recovered[:8]]] - 0.5).abs().max() < 0.1  # shared features
    assert relative_L[match_F[8:16][recovered[8:16]]].max() < 0.1  # A-only: no decoder in model B
    assert relative_L[match_F[16:][recovered[16:]]].min() > 0.9  # B-only
    classes = feature_classes(relative_L, 8, ["A", "B"])
    assert {classes[i] for i in match_F[8:16][recovered[8:16]].tolist()} == {"A-only"}
    with torch.no_grad():  # FVE on fresh tokens, inference with the learned threshold
        a_BMD = _planted_data(2048, generator, directions_FMD, 3 / 24)
        recon_BMD, codes = crosscoder(a_BMD, use_threshold=True)
        evaluation = CrosscoderEvaluation(2, d_in, 64, torch.arange(0), 1)
        evaluation.update(a_BMD, recon_BMD, codes, torch.arange(2048))
    results = evaluation.results()
    assert float(results["fve_M"].min()) > 0.95
    assert 1.5 < float(results["l0"]) < 6.0


def test_evaluation_tracks_the_top_activations_of_sampled_features_and_densities():
    torch.manual_seed(3)
    crosscoder = BatchTopKCrosscoder(2, 8, 40, k=4, num_shared=4)
    tracked_F = torch.tensor([0, 5, 17, 39])
    evaluation = CrosscoderEvaluation(2, 8, 40, tracked_F, contexts_per_feature=3)
    all_codes_BL, all_rows = [], []
    with torch.no_grad():
        for batch in range(4):
            a_BMD = torch.randn(30, 2, 8)
            recon_BMD, codes = crosscoder(a_BMD)
            rows_B = torch.arange(30) + 100 * batch
            evaluation.update(a_BMD, recon_BMD, codes, rows_B)
            all_codes_BL.append(codes.dense())
            all_rows.append(rows_B)
    codes_TL, rows_T = torch.cat(all_codes_BL), torch.cat(all_rows)
    top = codes_TL[:, tracked_F].t().topk(3, dim=1)
    torch.testing.assert_close(evaluation.top_values_Fn, top.values)
    active_F = top.values > 0
    assert torch.equal(evaluation.top_rows_Fn[active_F], rows_T[top.indices][active_F])
    results = evaluation.results()
    torch.testing.assert_close(results["density_L"], (codes_TL > 0).double().mean(0))
    assert float(results["l0"]) == pytest.approx(4.0)  # BatchTopK: exactly k per token on average
    assert float(results["dead_fraction"]) == pytest.approx(float((codes_TL.sum(0) == 0).double().mean()))


def test_inference_threshold_is_an_ema_of_the_smallest_kept_score():
    torch.manual_seed(4)
    crosscoder = BatchTopKCrosscoder(2, 8, 48, k=3, num_shared=0)
    norms_L = crosscoder.decoder_LMD().detach().norm(dim=-1).sum(-1)
    smallest = []
    with torch.no_grad():
        for _ in range(2):
            codes = crosscoder.encode(torch.randn(40, 2, 8))
            smallest.append(float((codes.values_N * norms_L[codes.cols_N]).min()))
            crosscoder.update_threshold(codes, beta=0.9)
    assert float(crosscoder.threshold) == pytest.approx(0.9 * smallest[0] + 0.1 * smallest[1], rel=1e-6)
    with torch.no_grad():  # at inference every latent whose weighted score clears the threshold is kept
        a_BMD = torch.randn(40, 2, 8)
        codes = crosscoder.encode(a_BMD, use_threshold=True)
        pre_BL = ((a_BMD - crosscoder.b_dec_MD).reshape(40, -1) @ crosscoder.w_enc_IL + crosscoder.b_enc_L).relu()
    assert torch.equal(codes.dense() > 0, pre_BL * norms_L > crosscoder.threshold)
