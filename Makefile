# SPDX-License-Identifier: GPL-2.0
#
# kvm-apicv-defer: top-level entry points.  The module itself is built by
# Kbuild (see Kbuild); these targets drive the rig around it.

.PHONY: all check bootstrap kernel module run boot help

all: module

help:
	@echo "make check      build everything (cached) and run all tests"
	@echo "make run        boot the emulated Intel host and run the demo"
	@echo "make module     build kvm_apicv_defer.ko against the rig's kernel"
	@echo "                (KDIR=/path/to/kernel/build for your own kernel)"
	@echo "make boot       boot the emulated Intel host, show kvm_intel's VMX setup"
	@echo "make kernel     build the patched host kernel"
	@echo "make bootstrap  install the toolchain (Debian, rustup, crates.io)"

check:
	@scripts/check

bootstrap:
	@scripts/bootstrap

kernel:
	@scripts/build-kernel

module:
	@scripts/build-module

boot:
	@scripts/boot

run:
	@echo "make run: not available yet (needs the module and the emulated Intel host)"; exit 1
