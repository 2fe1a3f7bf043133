"""`eval --ablation`'s method aliases: names for AccKV settings, as `-m NAME:key=value` specs.

Torch-free, like every method spec, so that `eval` checks them before it imports a model.
"""

# AccKV with one component off (the paper's Table-6 ablations), the paper read literally, and the measured
# departures reverted one at a time (docs/acckv-defaults.md).
ABLATIONS = {
    "acckv-paper": "acckv:redistribution=paper,budget_split=proportional,coverage=none,calibration=true,tau=0.6,"
                   "salience=0,skeleton=0,modality_floor=0,flat_kurtosis_audio=0,flat_kurtosis_video=0,pooling=1",
    "acckv-no-AR": "acckv:redistribution=none",
    "acckv-no-AF": "acckv:focusing=false",
    "acckv-no-CC": "acckv:merge_target=none,calibration=false",
    "acckv-calibrated": "acckv:calibration=true,tau=0.6",
    "acckv-calibrated-0.9": "acckv:calibration=true,tau=0.9",
    "acckv-no-coverage": "acckv:coverage=none",
    "acckv-all-rows": "acckv:score_queries=all",
    "acckv-xmodal-merge": "acckv:cross_modal_merge=true",
    "acckv-no-salience": "acckv:salience=0",
    "acckv-no-skeleton": "acckv:skeleton=0,flat_kurtosis_audio=0,flat_kurtosis_video=0",
    # the defaults before round 4, round 7 (no floor under A-F's quotas), round 8 (no flat-kurtosis skeleton) and
    # round 9 (no pooling of the ranking)
    "acckv-round3": "acckv:salience=0,skeleton=0,coverage_seconds=0.25,modality_floor=0,flat_kurtosis_audio=0,"
                    "flat_kurtosis_video=0,pooling=1",
    "acckv-round6": "acckv:modality_floor=0,flat_kurtosis_audio=0,flat_kurtosis_video=0,pooling=1",
    "acckv-round7": "acckv:flat_kurtosis_audio=0,flat_kurtosis_video=0,pooling=1",
    "acckv-round8": "acckv:pooling=1",
}
