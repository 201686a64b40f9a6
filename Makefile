# etcdops: Ansible modules in Go and playbooks for changing a kubeasz-style
# etcd cluster while it serves. `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
N ?= 4
MODULES := $(notdir $(wildcard modules/*))
ARCHES := amd64 arm64
# The one place the version is kept: the binary is stamped with it (every
# module result reports it as etcdops_version) and the collection carries it.
VERSION := $(shell cat VERSION)
GOFLAGS_BUILD := -trimpath -buildvcs=false -ldflags "-s -w -buildid= -X github.com/etcdops/etcdops/internal/modrun.Version=$(VERSION)"
ANSIBLE_PLAYBOOK ?= ansible-playbook
VENV := .venv
VENV_219 := .venv-2.19
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: collection help build deps venv etcd-bin test test-long test-go test-lab lint lab-up lab-down demo bench matrix molecule clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## Build the one binary, build/linux_<arch>/etcdops, and link it as library/<module> for each module (amd64)
	@for arch in $(ARCHES); do \
	  mkdir -p build/linux_$$arch; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build $(GOFLAGS_BUILD) -o build/linux_$$arch/etcdops ./cmd/etcdops || exit 1; \
	  rm -f $(addprefix build/linux_$$arch/,$(MODULES)); \
	done
	@mkdir -p library && for m in $(MODULES); do ln -f build/linux_amd64/etcdops library/$$m 2>/dev/null || cp -f build/linux_amd64/etcdops library/$$m; done
	@echo "built: $(foreach a,$(ARCHES),build/linux_$(a)/etcdops); linked as library/: $(MODULES)"

collection: build venv ## The Ansible collection etcdops.etcd: build/etcdops-etcd-<VERSION>.tar.gz, assembled in build/collection
	$(VENV)/bin/python collection/build.py build/collection/ansible_collections/etcdops/etcd
	$(VENV)/bin/ansible-galaxy collection build --force --output-path build build/collection/ansible_collections/etcdops/etcd

deps: ## Install what a fresh machine lacks (Debian packages)
	@bash lab/install-deps.sh

etcd-bin: ## Build etcd, etcdctl and etcdutl (cached) into bin/
	@bash lab/etcdbin/build.sh >/dev/null

test: deps build etcd-bin lint test-go test-lab molecule ## Run the tests CI runs: lint, Go tests against real etcd, the lab end to end, molecule (about 55 minutes)

test-long: test matrix ## make test, then the version matrix (about 17 minutes more): run before an issue is resolved

test-go: build etcd-bin venv ## Go unit and integration tests (embedded and real etcd; the action plugin with ansible-core 2.14, 2.19 and the newest)
	ETCD_BIN_DIR=$(CURDIR)/bin $(GO) test -count=1 ./...

# The full scenario runs on the newest pair: ansible-core from .venv, the
# pinned etcd. make matrix covers the others.
test-lab: build etcd-bin venv collection ## End-to-end tests of the playbooks in the lab (newest ansible-core; the collection on 2.14 too)
	ANSIBLE_PLAYBOOK=$(CURDIR)/$(VENV)/bin/ansible-playbook ETCD_BIN_DIR=$(CURDIR)/bin \
	  $(GO) test -count=1 -tags lab -timeout 60m -v ./tests/lab/

matrix: build etcd-bin venv ## Short lab scenario for ansible-core 2.14, 2.19 and newest x etcd 3.4, 3.5, 3.6 (build/matrix.txt)
	bash lab/matrix.sh

molecule: build etcd-bin venv ## molecule test: the molecule/default scenario on the lab
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH molecule test

venv: $(VENV)/.installed $(VENV_219)/.installed ## Python tools and the newest ansible-core in .venv (Python >= 3.12); ansible-core 2.19 in .venv-2.19 (Python 3.11)

# Each venv is made afresh when its requirements change (an older .venv may
# hold another Python).
$(VENV)/.installed: requirements.txt lab/find-python.sh
	@py=$$(bash lab/find-python.sh 3.12 3.14) && echo "venv: $(VENV) with $$py" && rm -rf $(VENV) && $$py -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV_219)/.installed: requirements-2.19.txt lab/find-python.sh
	@py=$$(bash lab/find-python.sh 3.11 3.11) && echo "venv: $(VENV_219) with $$py" && rm -rf $(VENV_219) && $$py -m venv $(VENV_219)
	$(VENV_219)/bin/pip install -q --disable-pip-version-check -r requirements-2.19.txt
	touch $@

lint: build venv collection ## gofmt, go vet, staticcheck, yamllint, ansible-lint (production profile), on the collection too, and its ansible-test sanity
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags lab ./tests/...
	$(GO) run $(STATICCHECK) ./...
	$(VENV)/bin/yamllint -s playbooks roles library
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH ansible-lint --offline
	bash collection/check.sh

lab-up: ## Bring up the lab: N machines (default 4) and inventory/hosts
	bash lab/lab.sh up $(N)

lab-down: ## Stop the lab and remove everything it made
	bash lab/lab.sh down

demo: deps build etcd-bin lab-up ## The main job: lab + a 3-member TLS etcd cluster, then its member list and health
	$(ANSIBLE_PLAYBOOK) playbooks/02.etcd.yml
	$(ANSIBLE_PLAYBOOK) playbooks/tools/cluster_status.yml

bench: build etcd-bin lab-up ## Benchmarks in the lab: module execution (ratios to etcdctl tasks); snapshot save if built; the backup upload to versitygw (ratio to a plain PutObject, peak memory)
	$(ANSIBLE_PLAYBOOK) playbooks/02.etcd.yml >/dev/null
	bash bench/modules/run.sh
	@if [ -f bench/snapshot/run.sh ]; then bash bench/snapshot/run.sh; elif [ -d bench/snapshot ]; then ETCD_BIN_DIR=$(CURDIR)/bin $(GO) run ./bench/snapshot; fi
	$(GO) run ./bench/upload

clean: ## Remove build outputs (not the caches)
	rm -rf build $(addprefix library/,$(MODULES)) bin
