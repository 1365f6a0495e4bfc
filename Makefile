# speechbert: one command each for set-up, the demo, the tests, lint and benchmarks.
# `make demo` and `make test` run `make setup` first when needed, so each is one command on a
# fresh machine.

SHELL := /bin/bash
PYTHON_SYS ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
CORPUS := data/mini
SEED ?= 0

.PHONY: setup system-deps venv corpus demo pretrain-demo test lint bench clean-corpus help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: system-deps venv corpus  ## system packages, .venv with the pinned stack, bundled corpus

system-deps:
	@bash scripts/system_deps.sh

venv: $(VENV)/.stamp-install

$(VENV)/.stamp-install: pyproject.toml
	@$(PYTHON_SYS) -c 'import sys; assert sys.version_info[:2] == (3, 11), \
		f"speechbert needs Python 3.11, found {sys.version.split()[0]}: set PYTHON_SYS=/path/to/python3.11"'
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

corpus: $(CORPUS)/manifests/.complete  ## generate the bundled corpus and its manifests

$(CORPUS)/manifests/.complete: | $(VENV)/.stamp-install
	$(PY) -m data_prep.minicorpus --out $(CORPUS) --seed $(SEED)
	$(PY) -m data_prep.librispeech --root $(CORPUS)/LibriSpeech --out $(CORPUS)/manifests/librispeech
	$(PY) -m data_prep.speech_commands --root $(CORPUS)/speech_commands_v0.01 \
		--out $(CORPUS)/manifests/speech_commands --seed $(SEED)
	$(PY) -m data_prep.voxceleb --root $(CORPUS)/VoxCeleb1 --out $(CORPUS)/manifests/voxceleb1
	@touch $@

demo: setup  ## the whole flow on the bundled corpus into runs/demo (a rerun skips finished stages)
	$(PY) -m data_prep.summary $(CORPUS)
	$(MAKE) --no-print-directory -j$(DEMO_JOBS) demo-stages
	$(PY) -m evals.pretrain_report $(addprefix $(RUNS)/pretrain/,$(PRETRAIN_RUNS))
	@cat $(DEMO)/superb/report.md
	@echo; echo "Wall time per stage ($(DEMO)/stage_times.tsv):"
	@$(PY) -m evals.stage_times table $(DEMO)/stage_times.tsv
	@echo; echo "Report, plots and figures: $(DEMO)/superb/report.md, $(DEMO)/superb/*.png, $(DEMO)/tts/"

# The demo's stages run two at a time (DEMO_JOBS), one torch thread each: on a 2-core CPU that is
# faster than one stage on two threads, as the tiny models use threads poorly. Each stage is
# timed into runs/demo/stage_times.tsv; progress bars are off so the two logs stay readable.
DEMO := runs/demo
DEMO_JOBS ?= 2
STAGE = OMP_NUM_THREADS=1 $(PY) -m evals.stage_times run --log $(DEMO)/stage_times.tsv --stage
QUIET := trainer.progress_bar=false

.PHONY: demo-stages readme-report
readme-report:  ## after make demo: put its SUPERB table, stage times and plots into README.md
	$(PY) -m evals.readme_report --demo $(DEMO) --readme README.md --assets docs/demo

demo-stages: $(foreach b,$(BUDGETS),$(DEMO)/superb/lighthubert_mini_p$(b)/results.json) \
		$(DEMO)/superb/report.md $(DEMO)/tts/metrics.json

# Pretraining on the bundled corpus: MFCC k-means -> HuBERT iteration 1 -> k-means on its
# layer 1 -> HuBERT iteration 2, and w2v-BERT. Each target is the file a finished stage writes.
RUNS := runs
LS := $(CORPUS)/manifests/librispeech
KM_MANIFESTS := $(LS)/train-clean-100.tsv $(LS)/dev-clean.tsv
PRETRAIN_RUNS := hubert_mini_iter1 hubert_mini_iter2 w2vbert_mini

pretrain-demo: $(foreach r,$(PRETRAIN_RUNS),$(RUNS)/pretrain/$(r)/metrics.json)

$(RUNS)/kmeans/mini_mfcc100/dev-clean.km: | $(CORPUS)/manifests/.complete
	$(STAGE) mfcc-kmeans -- $(PY) -m data_prep.kmeans --features mfcc --n-clusters 100 --manifests $(KM_MANIFESTS) \
		--out $(RUNS)/kmeans/mini_mfcc100

$(RUNS)/pretrain/hubert_mini_iter1/metrics.json: $(RUNS)/kmeans/mini_mfcc100/dev-clean.km
	$(STAGE) hubert-iter1 -- $(VENV)/bin/speechbert-pretrain experiment=hubert_mini_iter1 $(QUIET)

$(RUNS)/kmeans/mini_hubert_iter1_l2_km100/dev-clean.km: $(RUNS)/pretrain/hubert_mini_iter1/metrics.json
	$(STAGE) layer-kmeans -- $(PY) -m data_prep.kmeans --features layer --layer 2 \
		--checkpoint $(RUNS)/pretrain/hubert_mini_iter1/checkpoints/last.ckpt \
		--n-clusters 100 --manifests $(KM_MANIFESTS) --out $(RUNS)/kmeans/mini_hubert_iter1_l2_km100

$(RUNS)/pretrain/hubert_mini_iter2/metrics.json: $(RUNS)/kmeans/mini_hubert_iter1_l2_km100/dev-clean.km
	$(STAGE) hubert-iter2 -- $(VENV)/bin/speechbert-pretrain experiment=hubert_mini_iter2 $(QUIET)

$(RUNS)/pretrain/w2vbert_mini/metrics.json: | $(CORPUS)/manifests/.complete
	$(STAGE) w2vbert -- $(VENV)/bin/speechbert-pretrain experiment=w2vbert_mini $(QUIET)

# LightHuBERT on the bundled corpus: stage 1 (full-size student from the iteration-2 teacher),
# stage 2 (once-for-all), subnet search for about 75%, 50% and 30% of the max subnet's parameters,
# each exported as a standalone encoder; then SUPERB (ASR, KS, SV) for FBANK, the teacher,
# w2v-BERT, the supernet at its max subnet and the three subnets, and the report with plots.
DISTILL := $(RUNS)/distill
SUPERNET := $(DISTILL)/lighthubert_mini_stage2/checkpoints/last.ckpt
BUDGETS := 75 50 30
SUBNETS := $(foreach b,$(BUDGETS),lighthubert_mini_p$(b))
SUPERB_UPSTREAMS := fbank hubert_mini_iter2 w2vbert_mini lighthubert_mini_max $(SUBNETS)

.PHONY: distill-demo superb-demo
.SECONDARY: $(foreach s,$(SUBNETS),$(RUNS)/subnet/$(s)/subnet.json)
distill-demo: $(foreach s,$(SUBNETS),$(RUNS)/export/$(s)/encoder.pt)  ## stages 1-2, search, export
superb-demo: $(DEMO)/superb/report.md  ## SUPERB cells, results.json, report.md and plots

$(DISTILL)/lighthubert_mini_stage1/metrics.json: $(RUNS)/pretrain/hubert_mini_iter2/metrics.json
	$(STAGE) distill-stage1 -- $(VENV)/bin/speechbert-distill \
		distill_experiment=lighthubert_mini_stage1 $(QUIET)

$(DISTILL)/lighthubert_mini_stage2/metrics.json: $(DISTILL)/lighthubert_mini_stage1/metrics.json
	$(STAGE) distill-stage2 -- $(VENV)/bin/speechbert-distill \
		distill_experiment=lighthubert_mini_stage2 $(QUIET)

$(RUNS)/subnet/lighthubert_mini_p%/subnet.json: $(DISTILL)/lighthubert_mini_stage2/metrics.json
	$(STAGE) search-p$* -- $(VENV)/bin/speechbert-subnet checkpoint=$(SUPERNET) \
		budget.params_fraction=0.$* name=lighthubert_mini_p$* progress_bar=false

$(RUNS)/export/lighthubert_mini_p%/encoder.pt: $(RUNS)/subnet/lighthubert_mini_p%/subnet.json
	$(STAGE) export-p$* -- $(VENV)/bin/speechbert-export checkpoint=$(SUPERNET) \
		subnet=$< name=lighthubert_mini_p$*

# One SUPERB grid per upstream, started as soon as its upstream exists (FBANK's at once), each
# writing its own records; the collecting run then finds every cell finished and writes
# results.json for the report.
SUPERB_OUT := $(DEMO)/superb
SUPERB_CELLS = $(STAGE) superb-$(1) -- $(PY) -m evals.superb --upstreams $(1) \
	--tasks asr ks sv --out $(SUPERB_OUT) --results $(SUPERB_OUT)/$(1)/results.json

$(SUPERB_OUT)/fbank/results.json: | $(CORPUS)/manifests/.complete
	$(call SUPERB_CELLS,fbank)
$(SUPERB_OUT)/hubert_mini_iter2/results.json: $(RUNS)/pretrain/hubert_mini_iter2/metrics.json
	$(call SUPERB_CELLS,hubert_mini_iter2)
$(SUPERB_OUT)/w2vbert_mini/results.json: $(RUNS)/pretrain/w2vbert_mini/metrics.json
	$(call SUPERB_CELLS,w2vbert_mini)
$(SUPERB_OUT)/lighthubert_mini_max/results.json: $(DISTILL)/lighthubert_mini_stage2/metrics.json
	$(call SUPERB_CELLS,lighthubert_mini_max)
$(SUPERB_OUT)/lighthubert_mini_p%/results.json: $(RUNS)/export/lighthubert_mini_p%/encoder.pt
	$(call SUPERB_CELLS,lighthubert_mini_p$*)

$(SUPERB_OUT)/results.json: $(foreach u,$(SUPERB_UPSTREAMS),$(SUPERB_OUT)/$(u)/results.json)
	$(PY) -m evals.superb --upstreams $(SUPERB_UPSTREAMS) --tasks asr ks sv --out $(SUPERB_OUT)

$(SUPERB_OUT)/report.md: $(SUPERB_OUT)/results.json
	$(STAGE) report -- $(PY) -m evals.superb_report $(SUPERB_OUT)

test: setup  ## the test suite (unit, parity and integration tests)
	$(PY) -m pytest -q

lint: venv  ## ruff and mypy
	$(VENV)/bin/ruff check speechbert data_prep evals tests
	$(VENV)/bin/mypy speechbert data_prep evals

bench: setup  ## benchmarks, printed as JSON (ratios against the libraries we build on)
	$(PY) -m evals.bench
	$(PY) -m evals.bench_pretrain
	$(PY) -m evals.bench_supernet

clean-corpus:  ## remove the generated corpus (make setup regenerates it)
	rm -rf $(CORPUS)

# WavThruVec TTS on the bundled corpus (tiny presets, on the tiny w2v-BERT): text2vec,
# vec2wav on its embeddings, and the same vec2wav recipe on the 50 Hz mel Griffin-Lim inverts
# (the fair vocoder-vs-Griffin-Lim comparison); then evals.tts writes runs/demo/tts/metrics.json
# (MCD, WER/CER and speaker similarity by the SUPERB cells when they exist, training times) and
# runs/demo/tts/spectrogram.png. One torch thread per process: faster on a shared 2-core CPU.
TTS_TRAIN = $(STAGE) $(1) -- $(VENV)/bin/speechbert-tts-train tts_experiment=mini
TTS_UPSTREAM := $(RUNS)/pretrain/w2vbert_mini/metrics.json

.PHONY: demo-tts
demo-tts: $(RUNS)/demo/tts/metrics.json  ## TTS: train both stages, report MCD/WER vs baselines

$(RUNS)/text2vec/mini/metrics.json: $(TTS_UPSTREAM)
	$(call TTS_TRAIN,tts-text2vec) stage=text2vec

$(RUNS)/vec2wav/mini/metrics.json: $(TTS_UPSTREAM)
	$(call TTS_TRAIN,tts-vec2wav) stage=vec2wav

$(RUNS)/vec2wav/mini_mel/metrics.json: | $(CORPUS)/manifests/.complete
	$(call TTS_TRAIN,tts-vec2wav-mel) stage=vec2wav name=mini_mel data.conditioning=mel data.layer=0

# The SUPERB cells of w2v-BERT are the judges (the best ASR and SV of the demo's upstreams): its
# ASR transcribes, its SV model compares.
$(RUNS)/demo/tts/metrics.json: $(RUNS)/text2vec/mini/metrics.json \
		$(RUNS)/vec2wav/mini/metrics.json $(RUNS)/vec2wav/mini_mel/metrics.json \
		$(SUPERB_OUT)/w2vbert_mini/results.json
	$(STAGE) tts-eval -- $(PY) -m evals.tts --name mini --mel-vocoder mini_mel \
		--superb $(SUPERB_OUT)/w2vbert_mini --out $(RUNS)/demo/tts

# `make demo` only: two lanes of one stage each, so that lane A (k-means, HuBERT, distillation,
# the searches one after another, the subnets' SUPERB cells) always has a core, and everything
# else queues in lane B in this order. In session 4's run lane A held 14.0 min of stage time and
# lane B 15.7 min, and the demo took 15.7 min. Without these order-only links make -j2 started
# w2v-BERT before HuBERT iteration 1 and SUPERB cells before distillation stage 2 (with the
# conv teacher then, the demo took 20.7 min instead of 17.4).
ifneq ($(filter demo-stages,$(MAKECMDGOALS)),)
$(RUNS)/subnet/lighthubert_mini_p50/subnet.json: | $(RUNS)/subnet/lighthubert_mini_p75/subnet.json
$(RUNS)/subnet/lighthubert_mini_p30/subnet.json: | $(RUNS)/subnet/lighthubert_mini_p50/subnet.json
$(SUPERB_OUT)/fbank/results.json: | $(RUNS)/pretrain/w2vbert_mini/metrics.json
$(SUPERB_OUT)/w2vbert_mini/results.json: | $(SUPERB_OUT)/fbank/results.json
$(RUNS)/vec2wav/mini_mel/metrics.json: | $(SUPERB_OUT)/w2vbert_mini/results.json
$(RUNS)/text2vec/mini/metrics.json: | $(RUNS)/vec2wav/mini_mel/metrics.json
$(RUNS)/vec2wav/mini/metrics.json: | $(RUNS)/text2vec/mini/metrics.json
$(SUPERB_OUT)/hubert_mini_iter2/results.json: | $(RUNS)/vec2wav/mini/metrics.json
$(SUPERB_OUT)/lighthubert_mini_max/results.json: | $(SUPERB_OUT)/hubert_mini_iter2/results.json
endif
