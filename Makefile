# The two commands of README.md:
#   make demo   set up and run the demo on 127.0.0.1:8000 (SQLite, no Redis needed)
#   make test   set up and run the test suite (PostgreSQL and Redis)
PY := .venv/bin/python

.PHONY: demo test lint bench messages screenshots

COURIER_PORT ?= 8001

# The courier stand-in runs in the background for as long as runserver does
# (the tracker's default COURIER_API_URL points at it).
demo:
	scripts/install
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py seed_demo
	DEBUG=$${DEBUG:-1} $(PY) manage.py run_courier_standin --port $(COURIER_PORT) & standin=$$!; \
	trap 'kill $$standin 2>/dev/null' EXIT INT TERM; \
	DEBUG=$${DEBUG:-1} COURIER_API_URL=$${COURIER_API_URL:-http://127.0.0.1:$(COURIER_PORT)/} \
		$(PY) manage.py runserver 127.0.0.1:8000

test:
	scripts/install --dev
	scripts/ensure-services
	.venv/bin/ruff check .
	.venv/bin/pytest $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# The benchmark (docs/benchmarks.md): `make bench`, or `make bench BENCH_ARGS=--quick`.
bench:
	scripts/install --dev
	scripts/ensure-services
	.venv/bin/python -m bench.run $(BENCH_ARGS)

# The translation catalogs (docs/translations.md): every string of the
# templates, the Python code and the pages' scripts gathered into
# main/locale/<language>/LC_MESSAGES/ (django.po, djangojs.po), then compiled
# into the .mo files the application reads (committed). Needs GNU gettext.
LANGUAGES ?= zh_Hans
MESSAGES_IGNORE := --ignore=.venv --ignore=staticfiles --ignore=media --ignore=artifacts --ignore=bench --ignore=harness --ignore=main/tests
messages:
	DEBUG=1 $(PY) manage.py makemessages $(LANGUAGES:%=-l %) --add-location=file --no-obsolete $(MESSAGES_IGNORE)
	DEBUG=1 $(PY) manage.py makemessages -d djangojs $(LANGUAGES:%=-l %) --add-location=file --no-obsolete $(MESSAGES_IGNORE)
	DEBUG=1 $(PY) manage.py compilemessages $(LANGUAGES:%=-l %) $(MESSAGES_IGNORE)

# The pages' screenshots in docs/screenshots/ (the README's tour): each page at
# phone and desktop size, in English and Chinese, from the demo data in a
# throwaway database, in Debian's chromium.
screenshots:
	scripts/install --dev
	.venv/bin/python -m harness.screenshots
