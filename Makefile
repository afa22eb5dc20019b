VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-output

.PHONY: install demo test clean

$(VENV)/.installed: pyproject.toml lite/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ./lite -e '.[test,ray]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/mosquito-ast demo --output $(DEMO_OUT)

test: install
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT)
