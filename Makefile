# SPDX-License-Identifier: GPL-2.0
#
# kvm-apicv-defer: top-level entry points.  The module itself is built by
# Kbuild (see Kbuild); these targets drive the rig around it.

.PHONY: all check check-full check-fresh bootstrap kernel module run boot series bench bench-host dkms docs help \
	packages check-packages mutants test

all: module

help:
	@echo "make check      build everything (cached) and run all tests"
	@echo "make check-full make check, the hardening kernel's runs in full, the KCSAN"
	@echo "                kernel, the whole upstream x86 suite and the packages"
	@echo "make check-fresh  scripts/bootstrap in a bare Debian root (debootstrap)"
	@echo "make run        boot the emulated Intel host and run the demo"
	@echo "make test T=GLOB  boot the emulated Intel host once and run the tests whose"
	@echo "                names match GLOB[,GLOB...] in (a), (b) and (c) (e.g. T='*x2apic*')"
	@echo "make module     build kvm_apicv_defer.ko against the rig's kernel"
	@echo "                (KDIR=/path/to/kernel/build for your own kernel)"
	@echo "make boot       boot the emulated Intel host, show kvm_intel's VMX setup"
	@echo "make kernel     build the patched host kernel"
	@echo "make series     out/series/{selftests,rfc,bochs}: the upstream series"
	@echo "                (SIGNOFF=\"Name <email>\", V=2; Documentation/upstream.rst)"
	@echo "make mutants    boot each mutant of scripts/mutants.list: the tests must catch it"
	@echo "                (MUTANTS=REGEX picks some; one boot each, two at a time)"
	@echo "make bench      hook and deferral cost on the emulated host (out/bench/)"
	@echo "make bench-host the same benchmark on a real Intel host with VMX"
	@echo "make dkms       check that dkms builds the module for the rig's kernel"
	@echo "make packages   Debian packages for a real Intel host: linux-image, linux-headers"
	@echo "                (bindeb-pkg) and kvm-apicv-defer-dkms, in out/packages/"
	@echo "make check-packages  install them in a clean bookworm root, DKMS-build, boot (b)"
	@echo "make docs       build Documentation/ (docutils, warnings are errors)"
	@echo "make bootstrap  install the toolchain (Debian, rustup, crates.io)"

check:
	@scripts/check

check-full:
	@scripts/check --full

check-fresh:
	@scripts/check-fresh

bootstrap:
	@scripts/bootstrap

kernel:
	@scripts/build-kernel

module:
	@$(if $(KDIR),KDIR=$(KDIR)) scripts/build-module

boot:
	@scripts/boot

run:
	@scripts/run

# V=N is the series version here (Kbuild's V= verbosity elsewhere).
series:
	@$(if $(V),KAD_SERIES_VERSION='$(V)' )scripts/series

test:
	@scripts/test $(if $(T),'$(T)')

mutants:
	@scripts/mutants $(if $(MUTANTS),'$(MUTANTS)')

bench:
	@scripts/bench

bench-host:
	@scripts/bench --host

dkms:
	@scripts/dkms-check

packages:
	@scripts/build-packages

check-packages:
	@scripts/check-packages

docs:
	@scripts/build-docs
