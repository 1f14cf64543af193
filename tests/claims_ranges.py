"""What each chapter claims, per profile: ranges and relations its recorded numbers must satisfy.

A chapter records its headline numbers with ``msa_lib.profiles.Claims``; the tests read
them back here. ``demo`` checks are the chapter's prose (the committed outputs);
``smoke`` checks only that the run produced sane numbers (one epoch on 240 samples
learns little).
"""
from __future__ import annotations

import math

STUDENTS_07 = ("e0", "e01", "e03", "e05", "noleak", "noleak_e03", "blank")   # chapter 7's study: hint settings

METHODS_9 = ("text_only", "early_fusion", "late_fusion", "tfn", "mult", "dashfusion", "lnln", "hme", "cyin", "mmslf",
             "midg", "audio_only", "vision_only")

CHECKS = {
    "01_data_and_metrics": {
        "demo": [
            ("text probe is good", lambda c: 0.65 <= c["probe_text_acc2"] <= 0.9),
            ("audio alone weaker than text", lambda c: c["probe_audio_acc2"] < c["probe_text_acc2"]),
            ("vision alone weaker than text", lambda c: c["probe_vision_acc2"] < c["probe_text_acc2"]),
            ("all three beat text", lambda c: c["probe_all_acc2"] >= c["probe_text_acc2"] + 0.03),
            ("text fails on sarcasm", lambda c: c["probe_text_sarcastic_acc2"] < 0.3),
            ("audio/vision rescue sarcasm",
             lambda c: c["probe_all_sarcastic_acc2"] >= c["probe_text_sarcastic_acc2"] + 0.15),
            ("held-out domain is harder", lambda c: c["probe_shift_mae_gap"] > 0.1),
            ("every held-out domain is harder", lambda c: c["probe_shift_min_mae_gap"] > 0.0),
            ("voice and face of sarcastic clips read negative",
             lambda c: all(c[f"{m}_valence_sarcastic"] < 0 and
                           c[f"{m}_valence_sarcastic"] < c[f"{m}_valence_plain_positive"] - 0.1 for m in ("audio", "vision"))),
            ("words of sarcastic clips are positive", lambda c: c["sarcastic_text_label"] > 1.0),
            ("Has0 and Non0 nearly agree on SynthMSA's few zero labels",
             lambda c: c["zero_label_share"] < 0.1 and c["acc2_gap_synth_max"] <= 0.05),
            ("... and differ by more than ten points when 30 % of the labels are 0",
             lambda c: c["acc2_gap_neutral_heavy_max"] >= 0.1),
        ],
        "smoke": [
            ("text probe learns", lambda c: c["probe_text_acc2"] > 0.6),
            ("held-out domain is harder", lambda c: c["probe_shift_mae_gap"] > 0.0),
        ],
    },
    "02_fusion_baselines": {
        "demo": [
            ("text only is good", lambda c: 0.72 <= c["text_only_acc2"] <= 0.9),
            ("audio alone weaker", lambda c: c["audio_only_acc2"] < c["text_only_acc2"] - 0.03),
            ("vision alone weaker", lambda c: c["vision_only_acc2"] < c["text_only_acc2"] - 0.03),
            ("fusion beats text", lambda c: c["best_fusion_gain_over_text"] >= 0.02),
            ("gain is on sarcasm", lambda c: c["best_fusion_sarcastic_gain"] >= 0.2),
            ("best clean model loses more than text at r=0.9",
             lambda c: c["best_fusion_drop_at_0.9"] > c["text_only_drop_at_0.9"]),
            ("early fusion and TFN need audio/vision: keeping only text costs > 0.1",
             lambda c: all(c[f"pattern_tav_{m}"] - c[f"pattern_t_{m}"] > 0.1 for m in ("early_fusion", "tfn"))),
            ("late fusion with text only is as good as text only",
             lambda c: c["pattern_t_late_fusion"] >= c["text_only_acc2"] - 0.02),
            ("late fusion misses the sarcastic clips", lambda c: c["late_fusion_sarcastic_acc2"] <= 0.1),
            ("late fusion is best without text",
             lambda c: c["pattern_av_late_fusion"] >= max(c[f"pattern_av_{m}"] for m in ("early_fusion", "tfn", "mult"))),
            # the committed seed study (chapters/studies/02_fusion_seeds.csv)
            ("study: seed 0 is the live run, bit for bit", lambda c: c["study_seed0_matches_live"] == 0.0),
            ("study: every fusion model beats text only in every seed",
             lambda c: c["study_every_fusion_minus_text_min"] > 0),
            ("study: fusion means within two points", lambda c: c["study_fusion_means_range"] <= 0.02),
            ("study: the winner changes with the seed", lambda c: c["study_same_winner_every_seed"] == 0.0),
            ("study: late fusion gets almost no sarcastic clip right", lambda c: c["study_late_fusion_sarcastic"] <= 0.1),
        ],
        "smoke": [
            ("numbers are accuracies", lambda c: all(0.0 <= v <= 1.0 for k, v in c.items() if k.endswith("acc2"))),
        ],
    },
    # Chapter 3 -- DashFusion (owned by the DashFusion work; edit only this block)
    "03_dashfusion": {
        "demo": [
            ("DashFusion level with early fusion: a lead of three clips",
             lambda c: 0.0 < c["dashfusion_gain_over_early"] <= 0.012),
            ("... well inside one standard error",
             lambda c: 0.015 <= c["acc2_standard_error"] <= 0.025
             and c["dashfusion_gain_over_early"] / c["acc2_standard_error"] < 0.5),
            ("... with the same MAE", lambda c: abs(c["dashfusion_mae"] - c["early_fusion_mae"]) <= 0.01),
            ("without temporal alignment: more than three points lost, below early fusion",
             lambda c: 0.025 <= c["dashfusion_acc2"] - c["no_ta_acc2"] <= 0.05
             and c["no_ta_acc2"] < c["early_fusion_acc2"] and c["no_ta_mae"] > c["dashfusion_mae"] + 0.03),
            ("flat bottleneck and no contrastive terms above the full model by about two points",
             lambda c: 0.01 <= c["flat_acc2"] - c["dashfusion_acc2"] <= 0.03
             and 0.01 <= c["no_con_acc2"] - c["dashfusion_acc2"] <= 0.03),
            ("temporal attention is focused (about 0.6)",
             lambda c: 0.45 <= c["ta_relative_entropy_audio"] <= 0.75 and 0.45 <= c["ta_relative_entropy_vision"] <= 0.75),
            ("contrastive learning pulls a clip's modalities together",
             lambda c: c["same_clip_cos_with_con"] >= c["same_clip_cos_without_con"] + 0.2),
            ("companions cost activations (about 7x early fusion)", lambda c: 5.0 <= c["cost_activation_ratio"] <= 9.0),
            ("intended retrieval keeps every label relation", lambda c: c["ss_agreement_intended"] == 1.0),
            ("rank positions break the positives", lambda c: c["ss_agreement_faithful"] < 0.3),
            ("rank positions reuse few clips", lambda c: c["ss_distinct_faithful"] < 500),
            ("with build_unused the parameter counts are the official ones", lambda c: c["param_gap_build_unused"] == 0.0),
            # the committed seed study (chapters/studies/03_dashfusion_seeds.csv)
            ("study: seed 0 is the live run, bit for bit (pinned numerics)",
             lambda c: c["study_seed0_matches_live"] == 0.0),
            ("every departure from the official run has a reason", lambda c: c["recipe_rows_without_reason"] == 0),
            ("study: DashFusion ahead of early fusion in every seed, by little",
             lambda c: 0.0 < c["study_min_gain_over_early"] <= 0.01
             and 0.005 <= c["study_dash_mean"] - c["study_early_mean"] <= 0.02),
            ("study: the paper's alignment is below early fusion and near-uniform",
             lambda c: c["study_paper_align_mean"] < c["study_early_mean"] and c["study_entropy_paper"] > 0.9
             and c["study_entropy_ours"] < c["study_entropy_paper"] - 0.25),
            ("study: time codes lift the sarcastic clips",
             lambda c: c["study_sarcastic_ours"] >= c["study_sarcastic_paper"] + 0.15
             and c["study_sarcastic_ours"] > c["study_sarcastic_early"]),
            ("study: without alignment about three points lower",
             lambda c: 0.02 <= c["study_dash_mean"] - c["study_no_ta_mean"] <= 0.045),
            ("study: the paper's alignment ends where no alignment ends",
             lambda c: abs(c["study_paper_align_mean"] - c["study_no_ta_mean"]) <= 0.01),
            ("study: flat and no-contrastive above the full model, within about a point",
             lambda c: all(0.0 <= c[k] - c["study_dash_mean"] <= 0.012 for k in ("study_flat_mean", "study_no_con_mean"))),
            ("study: a text layer adds about three points", lambda c: 0.02 <= c["study_text_layer_mean"] - c["study_dash_mean"] <= 0.04),
            ("study: sarcastic clips with contrastive terms at least as good as without",
             lambda c: c["study_sarcastic_ours"] >= c["study_sarcastic_no_con"]),
            ("an untrained model's contrastive term is computed", lambda c: 0.0 < c["init_contrastive"] < 2.45),
            ("an untrained model: same-view cosines of different clips well above 0, first loss below 0.733",
             lambda c: c["init_cos_same_view_min"] >= 0.3 and c["init_contrastive"] < 10 / 22 * math.log(5)),
            ("under missing data: level on average, DashFusion lower at r = 0.9",
             lambda c: abs(c["missing_mean_dash"] - c["missing_mean_early"]) <= 0.01
             and c["missing_r09_dash"] <= c["missing_r09_early"] - 0.05),
            ("text alone: DashFusion better; audio and video alone: worse",
             lambda c: c["pattern_t_dash"] >= c["pattern_t_early"] + 0.03
             and c["pattern_av_dash"] <= c["pattern_av_early"] - 0.05),
            ("the faithful lookup's negatives differ in label as often as random pairs",
             lambda c: abs(c["random_pairs_differ"] - 0.84) <= 0.02),
            ("the official-configuration step is recorded", lambda c: c["official_step_finetuned_s"] > 0),
            ("official configuration: huge pages speed up DashFusion's step",
             lambda c: c["huge_pages_speedup_finetuned"] > 1.0),
        ],
        "smoke": [
            ("numbers are accuracies", lambda c: all(0.0 <= c[k] <= 1.0 for k in
                                                     ("dashfusion_acc2", "early_fusion_acc2", "no_ta_acc2",
                                                      "no_con_acc2", "flat_acc2"))),
            ("attention entropies are relative", lambda c: 0.0 < c["ta_relative_entropy_audio"] <= 1.0
             and 0.0 < c["ta_relative_entropy_vision"] <= 1.0),
            ("intended retrieval keeps the label relation", lambda c: c["ss_agreement_intended"] >= 0.95),
            ("rank positions break it", lambda c: c["ss_agreement_faithful"] < c["ss_agreement_intended"]),
            ("companions cost activation memory", lambda c: c["cost_activation_ratio"] > 1.0),
            ("with build_unused the parameter counts are the official ones", lambda c: c["param_gap_build_unused"] == 0.0),
        ],
    },
    # Chapter 4 -- LNLN (owned by the LNLN work; edit only this block)
    "04_lnln": {
        "demo": [
            # the committed seed study (chapters/studies/04_lnln_seeds.csv)
            ("study: seed 0 is the live run, bit for bit", lambda c: c["study_seed0_matches_live"] == 0.0),
            ("study: the augmented baseline has the highest mean, LNLN behind it on average",
             lambda c: c["study_aug_mean"] > c["study_lnln_mean"] and c["study_lnln_minus_aug_mean"] < 0),
            ("study: LNLN behind the augmented baseline in some seed by more than two points",
             lambda c: c["study_lnln_minus_aug_min"] <= -0.02),
            ("study: LNLN below the best clean baseline in one seed", lambda c: c["study_lnln_minus_best_clean_min"] < 0),
            ("study: training seeds move a mean by up to about 1.4 points",
             lambda c: 0.008 <= c["study_max_training_sd"] <= 0.02),
            ("study: w/o DMC drop small on average and reversed in a seed",
             lambda c: 0.0 < c["study_wo_dmc_drop"] <= 0.015 and c["study_wo_dmc_drop_min"] < 0),
            ("study: w/o DMML level", lambda c: abs(c["study_wo_dmml_drop"]) <= 0.005),
            ("study: with the code's GRL placement w barely moves and accuracy is lower",
             lambda c: c["study_grl_code_w_range"] <= 0.08 and c["study_grl_paper_w_range"] >= 0.2
             and c["study_grl_paper_mean"] - c["study_grl_code_mean"] >= 0.01),
            ("text alone: LNLN and the augmented TFN far above the clean TFN, text-only as good",
             lambda c: min(c["pattern_t_lnln"], c["pattern_t_aug"]) >= c["pattern_t_tfn"] + 0.1
             and c["pattern_t_text_only"] >= max(c["pattern_t_lnln"], c["pattern_t_aug"]) - 0.005),
            ("audio and video alone: LNLN the best", lambda c: c["pattern_av_lnln"] >= max(c["pattern_av_aug"], c["pattern_av_tfn"])),
            ("every departure from the official run has a reason", lambda c: c["recipe_rows_without_reason"] == 0),
            ("LNLN beats every clean-trained fusion baseline by about two points (mean over rates)",
             lambda c: 0.01 <= c["lnln_minus_best_clean_fusion"] <= 0.03),
            ("LNLN is level with the best clean-trained model at r = 0",
             lambda c: abs(c["lnln_minus_best_clean_r0"]) <= 0.01),
            ("at r = 0.9 LNLN keeps about three points more",
             lambda c: 0.02 <= c["lnln_r09"] - c["best_clean_fusion_r09"] <= 0.05),
            ("LNLN training data lifts TFN by about a point", lambda c: 0.003 <= c["aug_gain_over_clean"] <= 0.02),
            ("LNLN about a point above the augmented baseline", lambda c: 0.003 <= c["lnln_minus_aug"] <= 0.02),
            ("... under both mask seeds", lambda c: c["lnln_minus_aug_min_over_seeds"] > 0),
            ("... a difference as small as the mask-seed spread",
             lambda c: c["max_seed_spread"] >= 0.5 * c["lnln_minus_aug"]),
            ("L_adv starts at chance level", lambda c: 0.65 <= c["train_adv_first"] <= 0.75),
            ("... and ends only a little lower (about 0.55)",
             lambda c: 0.45 <= c["train_adv_last"] <= 0.62 and c["train_adv_last"] < c["train_adv_first"]),
            ("L_cc falls", lambda c: c["train_cc_drop"] > 0),
            ("mean w follows 1 - r", lambda c: c["w_corr_rate"] > 0.8),
            ("per clip w follows the kept fraction", lambda c: c["w_corr_clip"] > 0.7),
            ("w close to 1 on complete clips", lambda c: c["w_at_r0"] > 0.9),
            ("w about two thirds at r = 0.9", lambda c: 0.55 <= c["w_at_r09"] <= 0.8),
            ("w/o DMC costs about two points", lambda c: 0.01 <= c["mean_lnln"] - c["mean_wo_dmc"] <= 0.035),
            ("... most of it at high rates", lambda c: c["wo_dmc_drop_r09"] > c["wo_dmc_drop_r0"]),
            ("w/o DMML leaves the mean where it was (within the seed spread)",
             lambda c: abs(c["mean_wo_dmml"] - c["mean_lnln"]) <= c["max_seed_spread"]
             and c["mean_wo_dmml"] >= c["mean_lnln"] - 0.005),
            ("swapped F1 flatters a one-sided predictor",
             lambda c: c["f1_allpos_swapped"] > c["f1_allpos_correct"] + 0.2),
            ("for LNLN the two F1 orders agree within a point", lambda c: c["lnln_f1_order_max_gap"] < 0.01),
            ("official configuration: huge pages slow LNLN's step a little",
             lambda c: 0.8 <= c["huge_pages_speedup_finetuned"] < 1.0),
        ],
        "smoke": [
            ("accuracies are fractions", lambda c: all(0.0 <= c[k] <= 1.0 for k in c if k.startswith("mean_"))),
            ("w is a weight", lambda c: 0.0 <= c["w_at_r09"] <= 1.0 and 0.0 <= c["w_at_r0"] <= 1.0),
            ("losses are finite", lambda c: math.isfinite(c["train_adv_last"])),
        ],
    },
    "05_hme": {
        "demo": [
            ("MR 0.7 keeps one modality per clip: effective rate 2/3",
             lambda c: abs(c["effective_mr_07"] - 2 / 3) < 1e-3 and c["one_kept_07"] == 1.0),
            ("fewer than a third complete at MR 0.3", lambda c: c["complete_share_03"] < 1 / 3),
            ("a one-token Perceiver ignores its queries", lambda c: c["one_token_query_change"] < 1e-6),
            ("every departure from the official run has a reason", lambda c: c["recipe_rows_without_reason"] == 0),
            ("HME about a point below early fusion with the same sampling",
             lambda c: -0.025 <= c["hme_minus_best_baseline"] <= -0.005
             and c["mean_best_baseline"] == c["mean_early_fusion_sampled"]),
            ("TFN with the same sampling above HME too", lambda c: c["mean_tfn_sampled"] > c["mean_hme"]),
            ("the sampling is worth about four points to early fusion", lambda c: 0.03 <= c["ef_sampled_minus_ef"] <= 0.05),
            ("HME above the clean-trained baselines and LNLN",
             lambda c: c["mean_hme"] > max(c["mean_early_fusion"], c["mean_tfn"], c["mean_lnln"])),
            ("LNLN between the clean and the sampled baselines",
             lambda c: max(c["mean_early_fusion"], c["mean_tfn"]) < c["mean_lnln"] < c["mean_early_fusion_sampled"]),
            ("the gap to the best baseline is about one mask-seed spread",
             lambda c: 0.5 * c["max_mask_spread"] <= -c["hme_minus_best_baseline"] <= 1.5 * c["max_mask_spread"]),
            ("HME loses about eight points from MR 0 to 0.7", lambda c: 0.05 <= c["hme_mr0"] - c["hme_mr07"] <= 0.12),
            ("sigma does not rise when a modality is missing: lower for text, level for audio and vision",
             lambda c: c["sigma_missing_minus_present_text"] < -0.02
             and all(abs(c[f"sigma_missing_minus_present_{m}"]) < 0.01 for m in ("audio", "vision"))),
            ("the clamped confidence is 1 for every clip", lambda c: c["zeta_min"] == 1.0),
            ("the most confident clips have the larger errors",
             lambda c: c["spearman_conf_error"] > 0.1 and c["err_high_conf_quintile"] > c["err_low_conf_quintile"] + 0.3),
            ("the KL falls in training", lambda c: c["train_kl_last"] < 0.7 * c["train_kl_first"]),
            ("an audio query borrows from most of the bank", lambda c: c["neighbours_per_clip_audio"] > 0.5 * 1500),
            ("sarcastic clips do not find sarcastic neighbours (within 2 points of the base rate)",
             lambda c: all(abs(c[f"sarcastic_neighbour_share_{m}"] - c["sarcastic_base_rate"]) < 0.02
                           for m in ("text", "audio", "vision"))),
            ("the bank makes predictions independent of the batch", lambda c: c["bank_max_change"] == 0.0),
            ("in-batch predictions move with the batch, a little",
             lambda c: 0.0 < c["inbatch_mean_change_shuffled"] < 0.01 and c["inbatch_max_change"] > 0.002
             and c["inbatch_flips"] >= 1),
            ("the in-batch model about two points below the bank model",
             lambda c: 0.01 <= c["mean_hme"] - c["mean_inbatch"] <= 0.03),
            ("w/o retrieval: no change", lambda c: abs(c["drop_retrieval"]) < 0.003),
            ("w/o VIB about a point, w/o uncertainty about 2.5 points",
             lambda c: 0.005 <= c["drop_vib"] <= 0.015 and 0.015 <= c["drop_uncertainty"] <= 0.035),
            ("one model at MR 0.5 is worse at MR 0.5 than the model over all rates",
             lambda c: c["per_mr_model_at_05_minus_mixed"] <= -0.01 and c["per_mr_model_mean_minus_mixed"] < 0),
            ("official sizes: 120.4 M at width 96, 153.0 M at 192",
             lambda c: round(c["official_mosi_d96_with_bert"], 1) == 120.4
             and round(c["official_mosi_d192_with_bert"], 1) == 153.0),
            ("an HME epoch costs about five early-fusion epochs",
             lambda c: 3.0 <= c["hme_seconds_per_epoch_ratio_ef"] <= 8.0),
        ],
        "smoke": [
            ("accuracies are fractions", lambda c: all(0.0 <= c[k] <= 1.0 for k in c if k.startswith("mean_"))),
            ("MR 0.7 is 2/3", lambda c: abs(c["effective_mr_07"] - 2 / 3) < 1e-3),
            ("the bank makes predictions independent of the batch", lambda c: c["bank_max_change"] == 0.0),
            ("losses are finite", lambda c: math.isfinite(c["train_kl_last"])),
        ],
    },
    "06_cyin": {
        "demo": [
            ("toy: the rate grows with beta", lambda c: c["toy_rate_increases"] == 1.0),
            ("toy: small beta predicts the mean", lambda c: abs(c["toy_mse_small_beta_over_var"] - 1.0) < 0.02),
            ("toy: near the noise floor at beta 3 with about 1.4 nats, flat after",
             lambda c: c["toy_mse_beta3"] < 0.12 and 1.2 <= c["toy_rate_beta3"] <= 1.6
             and c["toy_rate_beta100"] > c["toy_rate_beta3"] + 2 and abs(c["toy_mse_beta100"] - c["toy_mse_beta3"]) < 0.01),
            ("toy: the latent keeps little of the noise and half of the signal",
             lambda c: c["toy_noise_r2_max"] < 0.1 and 0.45 <= c["toy_signal_r2_beta3"] <= 0.6),
            ("every departure from the official run has a reason", lambda c: c["recipe_rows_without_reason"] == 0),
            ("stage 2 from epoch 3; no translation loss before it, a tenfold fall after",
             lambda c: c["stage2_first_epoch"] == 3 and c["translation_in_stage1"] == 0.0
             and c["translation_first_stage2"] > 9 * c["translation_last"]),
            ("the fusion loss rises at the switch, the IB term climbs in stage 2",
             lambda c: c["task_first_stage2"] > c["task_last_stage1"] and c["ib_last"] > 1.5 * c["ib_last_stage1"]),
            ("the label heads hardly learn", lambda c: 0.0 < c["label_first"] - c["label_last"] < 0.5),
            ("validation jumps in stage 2; the last epoch is chosen",
             lambda c: c["valid_last_stage1"] - c["valid_min_stage2"] > 0.08 and c["best_epoch"] == 9),
            ("CyIN last in every column", lambda c: all(
                c[f"{p}_cyin"] < min(c[f"{p}_{m}"] for m in ("hme", "lnln", "early_fusion", "early_fusion_sampled"))
                for p in ("complete", "fixed", "random", "mr07"))),
            ("the gaps: 6.7 points on complete, 4.0 / 7.1 / 8.1 over MRs",
             lambda c: 0.06 <= c["complete_early_fusion"] - c["complete_cyin"] <= 0.075
             and 0.035 <= c["random_early_fusion"] - c["random_cyin"] <= 0.045
             and 0.065 <= c["random_hme"] - c["random_cyin"] <= 0.076
             and 0.076 <= c["random_early_fusion_sampled"] - c["random_cyin"] <= 0.086),
            ("the gaps exceed the mask-seed spread", lambda c: c["max_mask_spread"] < 0.02),
            ("audio alone below the majority class", lambda c: c["pattern_a_cyin"] < c["majority_share"]),
            ("translations carry almost no clip-specific direction", lambda c: -0.02 <= c["cosine_best"] <= 0.08),
            ("read by the label heads, translations fall short of the real text latent",
             lambda c: c["head_translated_to_text_best"] < c["head_real_text"] - 0.03
             and abs(c["head_real_audio"] - c["majority_share"]) < 0.01),
            ("the bottleneck means are small against the noise", lambda c: max(c[f"snr_{m}"] for m in ("text", "audio", "vision")) < 0.3),
            ("sampling: about a point of spread; -1.9 on complete, level with modalities missing",
             lambda c: all(0.004 <= c[f"sampled_sd_{t}"] <= 0.015 for t in ("complete", "av", "mr07"))
             and -0.025 <= c["sampled_minus_mu_complete"] <= -0.015
             and abs(c["sampled_minus_mu_av"]) < 0.01 and abs(c["sampled_minus_mu_mr07"]) < 0.01),
            # the committed study (chapters/studies/06_cyin_grid.csv)
            ("study: seed 0 is the live run, bit for bit", lambda c: c["study_seed0_matches_live"] == 0.0),
            ("study: gamma 1 best, an 8-point range over gamma",
             lambda c: c["study_gamma_best"] == 1.0 and 0.07 <= c["study_gamma_mr07_range"] <= 0.09),
            ("study: beta flat within the seed spread",
             lambda c: c["study_beta_mr07_range"] <= c["study_cyin_mr07_seed_range"] and c["study_cyin_mr07_seed_range"] <= 0.045),
            ("study: no substitution raises complete accuracy by more than 3 points in each seed",
             lambda c: c["study_nosub_complete_gain_min"] > 0.03 and c["drop_complete_translated_latents_in_stage_2"] < -0.03),
            ("study: no substitution lowers MR 0.7 by about 2.4 points", lambda c: 0.015 <= c["drop_mr07_translated_latents_in_stage_2"] <= 0.03),
            ("study: other ablations -1.9 to -3.2 on complete, -2.0 to +2.8 at MR 0.7", lambda c: all(
                0.018 <= c[f"drop_complete_{t}"] <= 0.033 and -0.03 <= c[f"drop_mr07_{t}"] <= 0.021
                for t in ("token_level_IB", "cyclic_interaction", "label_level_IB", "back_translation", "stage_1_only"))),
            ("study: w/o cyclic interaction the best at MR 0.7", lambda c: c["drop_mr07_cyclic_interaction"] == min(
                c[k] for k in c if k.startswith("drop_mr07_"))),
            ("official MOSI size: 155.55 M with BERT-base, not 123.49 M", lambda c: round(c["official_mosi_with_bert"], 2) == 155.55),
            ("a CyIN epoch costs about two HME epochs, about ten early-fusion epochs",
             lambda c: 1.5 <= c["cyin_seconds_per_epoch_ratio_hme"] <= 2.5 and 7.0 <= c["cyin_seconds_per_epoch_ratio_ef"] <= 14.0),
        ],
        "smoke": [
            ("accuracies are fractions", lambda c: all(0.0 <= c[k] <= 1.0 for k in c
                                                       if k.split("_")[0] in ("complete", "fixed", "random", "mr07"))),
            ("no translation loss in stage 1", lambda c: c["translation_in_stage1"] == 0.0 and c["stage2_first_epoch"] == 1),
            ("the toy rate grows with beta", lambda c: c["toy_rate_increases"] == 1.0),
            ("losses are finite", lambda c: math.isfinite(c["translation_last"]) and math.isfinite(c["ib_last"])),
        ],
    },
    "07_mmslf": {
        "demo": [
            ("every departure from the official run has a reason", lambda c: c["recipe_rows_without_reason"] == 0),
            ("every hint fits in the 128 tokens kept; the longest has 107",
             lambda c: c["hints_truncated_share"] == 0.0 and c["hint_tokens_max"] == 107),
            ("the teacher reads the leaked label: 0.998 on training clips, 0.811 / 0.773 on validation / test",
             lambda c: c["teacher_train"] >= 0.99 and abs(c["teacher_valid"] - 0.811) < 0.002
             and abs(c["teacher_test"] - 0.773) < 0.002 and c["teacher_train"] - c["teacher_test"] > 0.2),
            ("plain maps close to uniform (3.71 of 3.91 nats), modulated sharper (3.45)",
             lambda c: c["entropy_uniform"] - c["entropy_plain"] < 0.25
             and c["entropy_plain"] - c["entropy_modulated"] > 0.2),
            ("same most-attended frame in about 15 % of rows; Delta < 0 in about half of its entries",
             lambda c: 0.13 <= c["same_top_share"] <= 0.17 and 0.48 <= c["delta_negative_share"] <= 0.52
             and 0.3 <= c["total_variation"] <= 0.36),
            ("toy: a prompt key equal to the query lifts the third-smallest frame to the top; the reversed key, the least",
             lambda c: c["toy_along_frame_was_third_smallest"] == 1.0 and c["toy_against_top_was_plain_least"] == 1.0),
            ("fusion-token gap 0.62 -> 0.30 distilled, 0.70 alone",
             lambda c: abs(c["student_fusion_first"] - 0.62) < 0.01 and abs(c["student_fusion_last"] - 0.30) < 0.01
             and abs(c["alone_fusion_last"] - 0.70) < 0.01),
            ("distillation shrinks the gaps it is asked to shrink; the student alone drifts",
             lambda c: c["student_attn_last"] < 0.35 * c["student_attn_first"] and c["alone_attn_last"] > c["alone_attn_first"]
             and c["student_fusion_last"] < 0.5 * c["alone_fusion_last"]),
            ("seed 0: the distilled student 4.1 points below the student alone, early fusion ahead of both",
             lambda c: -0.045 <= c["distilled_minus_alone"] <= -0.035 and c["early_test"] > c["alone_test"] > c["student_test"]
             and abs(c["early_test"] - 0.832) < 0.002),
            # the committed study (chapters/studies/07_mmslf_grid.csv)
            ("study: seed 0 is the live run, bit for bit", lambda c: c["study_seed0_matches_live"] == 0.0),
            ("study: the leak teacher falls with the error rate, 0.792 -> 0.615",
             lambda c: c["study_teacher_e0"] > c["study_teacher_e01"] > c["study_teacher_e03"] > c["study_teacher_e05"]
             and abs(c["study_teacher_e0"] - 0.792) < 0.002 and abs(c["study_teacher_e05"] - 0.615) < 0.002),
            ("study: its students flat (0.772 to 0.777) and all below the student alone",
             lambda c: max(c[f"study_student_{t}"] for t in ("e0", "e01", "e03", "e05")) < c["study_alone"]
             and max(c[f"study_student_{t}"] for t in ("e0", "e01", "e03", "e05"))
             - min(c[f"study_student_{t}"] for t in ("e0", "e01", "e03", "e05")) < 0.01),
            ("study: no leak, a better teacher (0.869, above early fusion) and the worst student (0.757)",
             lambda c: c["study_teacher_noleak"] > c["study_early"] and c["study_teacher_noleak"] > c["study_teacher_e0"]
             and c["study_student_noleak"] == min(c[f"study_student_{t}"] for t in STUDENTS_07)
             and -0.055 <= c["study_noleak_student_minus_alone_min"] and c["study_noleak_student_minus_alone_max"] <= -0.015),
            ("study: distilling costs 1.3 to 4.1 points in every seed",
             lambda c: -0.042 <= c["study_distilled_minus_alone_min"] and c["study_distilled_minus_alone_max"] <= -0.012),
            ("study: every ablation raises the student on average; only the student alone in every seed",
             lambda c: all(c[f"drop_{t}"] < 0 for t in ("attention_matching", "fusion_token_matching", "teacher",
                                                       "conditional_map_target", "blank_hints"))
             and c["ahead_every_seed_only_alone"] == 1.0 and c["behind_every_seed_none"] == 1.0),
            ("study: the blank-hint teacher's student level with the student alone",
             lambda c: abs(c["study_student_blank"] - c["study_alone"]) < 0.005),
            ("study: early fusion and LNLN ahead of every student",
             lambda c: min(c["study_early"], c["study_lnln"]) > max([c["study_alone"]] + [c[f"study_student_{t}"] for t in STUDENTS_07])),
            # relations only: absolute times belong to benchmarks, not tests
            ("batches are cheaper per clip; the teacher slower than the student (the ratio of sub-millisecond timings "
             "varies from run to run: 3.5 committed, 2.0 in a re-run)",
             lambda c: c["student_ms_batched"] < c["student_ms_one"] and c["teacher_over_student_one"] > 1.0),
            ("official SIMS students: 492,289 (1, 1), 533,953 (1, 2), 815,553 (2, 2)",
             lambda c: c["sims_student_11"] == 492289 and c["official_sims_student"] == 533953 and c["sims_student_22"] == 815553),
        ],
        "smoke": [
            ("accuracies are fractions", lambda c: all(0.0 <= c[k] <= 1.0 for k in ("teacher_train", "teacher_test",
                                                                                   "student_test", "alone_test", "early_test"))),
            ("hints fit", lambda c: c["hints_truncated_share"] == 0.0),
            ("maps are distributions", lambda c: 0.0 < c["entropy_plain"] <= c["entropy_uniform"] + 1e-3),
            ("losses are finite", lambda c: math.isfinite(c["student_attn_last"]) and math.isfinite(c["student_fusion_last"])),
        ],
    },
    "08_midg": {
        "demo": [
            ("the protocol keeps the held-out domain out of training and selection: 1,125 training clips, 0 leaked",
             lambda c: c["holdout_leak"] == 0 and c["holdout_train_clips"] == 1125),
            ("audio and vision name every test clip's domain, text about half (chance 0.25)",
             lambda c: c["domain_acc_audio"] == 1.0 and c["domain_acc_vision"] == 1.0 and 0.45 <= c["domain_acc_text"] <= 0.6),
            ("mean labels per domain span +0.16 to -0.50", lambda c: abs(c["label_mean_spread"] - 0.66) < 0.01),
            # the committed study of every model (chapters/studies/08_midg_gap.csv)
            ("gap study: all eleven models lose, 14.6 points on average; studio-reviewers 26.6, call-centre 9.4",
             lambda c: c["gap_models_positive"] == 11 and abs(c["gap_mean_all"] - 0.146) < 0.002
             and abs(c["gap_worst_domain"] - 0.266) < 0.002 and abs(c["gap_best_domain"] - 0.094) < 0.002),
            ("gap study: text-only loses 3.4 points", lambda c: abs(c["gap_text_only"] - 0.034) < 0.002),
            ("MIDG's synth preset has 184,920 parameters and its adapter starts as the identity",
             lambda c: c["midg_params"] == 184920 and c["adapter_identity_at_init"] == 1.0),
            ("live: in-domain 0.804, held out ERM 0.495 and MIDG 0.536; the study repeats both runs",
             lambda c: abs(c["live_in_domain"] - 0.804) < 0.002 and abs(c["live_erm"] - 0.495) < 0.002
             and abs(c["live_midg"] - 0.536) < 0.002 and c["study_matches_live_erm"] == 1.0
             and c["study_matches_live_midg"] == 1.0),
            ("live: held-out predictions shifted by about +1.3, the in-domain model's by -0.14; correlation drops less",
             lambda c: 1.2 <= c["live_erm_bias"] <= 1.45 and 1.2 <= c["live_midg_bias"] <= 1.45
             and abs(c["live_in_domain_bias"]) < 0.2 and c["live_erm_corr"] > 0.35 and c["live_midg_corr"] > 0.35),
            # the committed grid (chapters/studies/08_midg_grid.csv)
            ("grid: ERM 0.576 held out, 0.825 in-domain; MIDG 0.577 (+0.1 points, ahead in 5 of 12 pairs)",
             lambda c: abs(c["erm_mean"] - 0.576) < 0.002 and abs(c["in_domain_erm"] - 0.825) < 0.002
             and abs(c["vs_erm_midg"] - 0.001) < 0.002 and c["wins_midg"] == 5),
            ("grid: CORAL and Mixup +1.7 points, ahead in 9 of 12, within one sd of ERM over seeds (0.037)",
             lambda c: all(0.015 <= c[f"vs_erm_{m}"] <= 0.019 and c[f"wins_{m}"] == 9 for m in ("coral", "mixup"))
             and max(c["vs_erm_coral"], c["vs_erm_mixup"]) < c["sd_erm"] and abs(c["sd_erm"] - 0.037) < 0.002),
            ("grid: adversarial -0.3 and IRM -0.9 points", lambda c: -0.005 <= c["vs_erm_adversarial"] <= 0.0
             and -0.011 <= c["vs_erm_irm"] <= -0.007),
            ("grid: the oracle gains 4.7 points, more than any method", lambda c: abs(c["vs_erm_oracle"] - 0.047) < 0.002
             and c["vs_erm_oracle"] > max(c[f"vs_erm_{m}"] for m in ("irm", "coral", "adversarial", "mixup", "midg"))),
            ("router: two experts take 99 % of the clips; entropy 0.995 of 1.386 nats",
             lambda c: abs(c["router_entropy"] - 0.995) < 0.005 and abs(c["router_top_share_max"] - 0.585) < 0.005),
            ("router: the sources alike (at most 0.04 apart), the held-out domain 0.22 from their average",
             lambda c: c["router_source_spread"] <= 0.04 and abs(c["router_heldout_shift"] - 0.22) < 0.01),
            ("ablations: every part's effect under 0.6 points; in-domain MIDG 0.823 and backbone 0.825",
             lambda c: all(abs(c[f"ablation_{t}"]) < 0.006 for t in ("adapter", "disentangle", "one_expert", "all"))
             and abs(c["in_domain_midg"] - 0.823) < 0.002),
        ],
        "smoke": [
            ("accuracies are fractions", lambda c: all(0.0 <= c[k] <= 1.0 for k in ("live_in_domain", "live_erm", "live_midg",
                                                                                   "domain_acc_audio", "domain_acc_text"))),
            ("the protocol leaks nothing", lambda c: c["holdout_leak"] == 0),
            ("the adapter starts as the identity", lambda c: c["adapter_identity_at_init"] == 1.0),
            ("the router's weights are a distribution", lambda c: 0.0 < c["router_entropy"] <= c["router_entropy_uniform"] + 1e-6),
        ],
    },
    # Chapter 9 -- the benchmark (reads chapters/studies/09_benchmark_grid.csv and 09_costs.csv; reruns a slice)
    "09_benchmark": {
        "demo": [
            ("the committed grid: 13 methods x 33 conditions x 3 seeds = 1,287 cells; 195 trainings planned",
             lambda c: c["cells"] == 1287 and c["methods"] == 13 and c["conditions"] == 33 and c["seeds"] == 3
             and c["plan_trainings"] == 195 and c["plan_matches_table"] == 1.0),
            ("late fusion best overall (0.763), the only method within noise of the best in all five columns",
             lambda c: abs(c["late_fusion_overall"] - 0.763) < 0.001 and c["all_five_count"] == 1
             and c["all_five_late_fusion"] == 1.0
             and all(c["late_fusion_overall"] > c[f"{m}_overall"] for m in METHODS_9 if m != "late_fusion")),
            ("complete data: DashFusion highest (0.835), nine methods within noise; MMSLF 0.778, CyIN 0.699",
             lambda c: abs(c["best_complete"] - 0.835) < 0.001 and abs(c["dashfusion_complete"] - 0.835) < 0.001
             and c["tied_complete"] == 9 and abs(c["mmslf_complete"] - 0.778) < 0.001
             and abs(c["cyin_complete"] - 0.699) < 0.001),
            ("random missing: LNLN best mean (0.774); late fusion best MR (0.776) and fixed (0.758); text-only best held out (0.752)",
             lambda c: abs(c["lnln_random_mean"] - 0.774) < 0.001 and abs(c["best_random_mean"] - 0.774) < 0.001
             and abs(c["late_fusion_mr_mean"] - 0.776) < 0.001 and abs(c["best_mr_mean"] - 0.776) < 0.001
             and abs(c["late_fusion_fixed_mean"] - 0.758) < 0.001 and abs(c["best_fixed_mean"] - 0.758) < 0.001
             and abs(c["text_only_held_out"] - 0.752) < 0.001 and abs(c["best_held_out"] - 0.752) < 0.001),
            ("curves: high starters lose 20-26 points from R 0 to 0.9, LNLN/late fusion/HME 11-12, CyIN 6.4",
             lambda c: all(0.20 <= c[f"{m}_drop_random"] <= 0.26 for m in ("dashfusion", "mult", "early_fusion", "midg"))
             and all(0.105 <= c[f"{m}_drop_random"] <= 0.12 for m in ("lnln", "late_fusion", "hme"))
             and abs(c["cyin_drop_random"] - 0.064) < 0.001),
            ("MR: late fusion loses 8.9 points from 0.1 to 0.7, DashFusion 24.8",
             lambda c: abs(c["late_fusion_drop_mr"] - 0.089) < 0.001 and abs(c["dashfusion_drop_mr"] - 0.248) < 0.001),
            ("patterns: best without text MIDG {a,v} 0.762; late fusion {t} 0.802 {a} 0.682; DashFusion {t} 0.634, MIDG {t} 0.612",
             lambda c: abs(c["best_without_text"] - 0.762) < 0.001 and abs(c["midg_pattern_av"] - 0.762) < 0.001
             and abs(c["late_fusion_pattern_t"] - 0.802) < 0.001 and abs(c["late_fusion_pattern_a"] - 0.682) < 0.001
             and abs(c["dashfusion_pattern_t"] - 0.634) < 0.001 and abs(c["midg_pattern_t"] - 0.612) < 0.001
             and abs(c["audio_only_pattern_a"] - 0.688) < 0.001 and abs(c["audio_only_pattern_t"] - 0.483) < 0.001),
            ("domains: every gap positive, text-only 4.3 to MIDG 24.6; studio-reviewers hardest for most",
             lambda c: c["gap_all_positive"] == 13 and abs(c["text_only_gap"] - 0.043) < 0.001
             and abs(c["midg_gap"] - 0.246) < 0.001 and c["hardest_for_studio-reviewers"] == 9),
            ("costs: late fusion 42,886 parameters and ~75 ms a step; HME, CyIN, TFN the largest; weak correlation",
             lambda c: c["late_fusion_params"] == 42886 and 60 <= c["late_fusion_step_ms"] <= 90
             and c["hme_params"] == 397965 and c["cyin_params"] == 296548 and c["tfn_params"] == 198481
             and c["study_matches_grid"] < 1e-4
             and c["grid_mem_min"] < 0.1 and c["grid_mem_max"] > 400),
            ("papers: LNLN and DashFusion first, within noise (+0.6, +0.5); HME -4.6, CyIN -12.3, MMSLF -5.2, MIDG -17.5, all behind in every seed",
             lambda c: c["paper_lnln_rank"] == 1 and c["paper_dashfusion_rank"] == 1
             and c["paper_lnln_verdict"] == 0 and c["paper_dashfusion_verdict"] == 0
             and abs(c["paper_lnln_diff"] - 0.006) < 0.001 and abs(c["paper_dashfusion_diff"] - 0.005) < 0.001
             and all(c[f"paper_{m}_verdict"] == -1 and c[f"paper_{m}_ahead"] == 0 for m in ("hme", "cyin", "mmslf", "midg"))
             and abs(c["paper_hme_diff"] + 0.046) < 0.001 and abs(c["paper_cyin_diff"] + 0.123) < 0.001
             and abs(c["paper_mmslf_diff"] + 0.052) < 0.001 and abs(c["paper_midg_diff"] + 0.175) < 0.001),
            ("the live slice reproduces every committed cell it reran",
             lambda c: c["slice_cells_matched"] == 21 and c["slice_max_diff"] < 1e-4),
            ("ex-bench-2: reversed frames cost early fusion 12.1 points, MulT 3.1",
             lambda c: abs(c["ex2_early_fusion_drop"] - 0.121) < 0.002 and abs(c["ex2_mult_drop"] - 0.031) < 0.002),
            ("ex-bench-3: pooled fusion 0.755 complete, 0.727 with {a,v}",
             lambda c: abs(c["ex3_complete"] - 0.755) < 0.001 and abs(c["ex3_av"] - 0.727) < 0.001),
            ("costs: correlation of log parameters and overall 0.45 over all, -0.36 over the multimodal ten",
             lambda c: abs(c["corr_params_overall"] - 0.45) < 0.01 and abs(c["corr_params_overall_multimodal"] + 0.36) < 0.01),
            ("grid bench: local and ray give the same table; ray's overhead under 10 %",
             lambda c: c["bench_same_table"] == 1.0 and c["bench_ray_overhead_pct"] < 10 and c["bench_ray_startup_s"] < 10),
        ],
        "smoke": [
            ("the committed grid is read", lambda c: c["cells"] == 1287 and c["methods"] == 13),
            ("scores are fractions", lambda c: all(0.0 <= c[f"{m}_complete"] <= 1.0 for m in METHODS_9)),
        ],
    },
}


def check(chapter: str, profile: str, claims: dict) -> list[str]:
    """Names of the checks that fail (a missing or NaN number fails its check)."""
    failed = []
    for name, rule in CHECKS.get(chapter, {}).get(profile, []):
        try:
            ok = bool(rule(claims))
        except KeyError as exc:
            ok, name = False, f"{name} (claim {exc} not recorded)"
        if not ok or any(isinstance(v, float) and math.isnan(v) for v in claims.values()):
            failed.append(name)
    return failed
