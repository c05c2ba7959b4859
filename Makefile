# stage1-kvm — the two commands a new machine needs are `make demo` and `make test`.
# Each installs what is missing (Debian packages, the kernel build, the cargo build) first.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

HOST_TARGET   := x86_64-unknown-linux-gnu
GUEST_DIR     := target/guest
KERNEL        := $(GUEST_DIR)/vmlinux
INITRAMFS     := $(GUEST_DIR)/initramfs.cpio
# The agent plus busybox (shell and tools), for end-to-end tests that run commands.
TEST_INITRAMFS := $(GUEST_DIR)/initramfs-test.cpio
AGENT         := target/$(HOST_TARGET)/release/guest-agent
STAGE1        := target/release/stage1-kvm
# The stage1 binary as it goes into the image: static, since it runs on any host.
STAGE1_STATIC := target/$(HOST_TARGET)/release/stage1-kvm
ACI           := target/stage1-kvm.aci
MKINITRAMFS   := target/release/mkinitramfs
CARGO         ?= cargo
# Static binaries (the guest has no libc): the flag applies to --target builds only, so
# build scripts and proc macros stay dynamic.
STATIC        := CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"

.PHONY: all deps kernel static initramfs initramfs-test build minirkt guest aci demo test lint unit e2e bench clean

all: build guest

deps:
	@ci/install-deps.sh

kernel: deps
	@mkdir -p $(GUEST_DIR)
	@vmlinux=$$(kernel-config/build.sh) && install -m 0644 "$$vmlinux" $(KERNEL)

# The guest agent and the stage1 binary of the image, both static.
static: deps
	$(STATIC) $(CARGO) build --release --target $(HOST_TARGET) -p guest-agent -p stage1-kvm

build: deps
	$(CARGO) build --release -p stage1-kvm -p stage1-kvm-initramfs

minirkt: deps
	$(CARGO) build --release -p minirkt

initramfs: static build
	@mkdir -p $(GUEST_DIR)
	$(MKINITRAMFS) --init $(AGENT) -o $(INITRAMFS)
	@echo "initramfs: $(INITRAMFS) ($$(stat -c %s $(INITRAMFS)) bytes)"

initramfs-test: static build
	@mkdir -p $(GUEST_DIR)
	links=$$(/bin/busybox --list-full | grep -vx 'bin/busybox' | sed 's|.*|--symlink &:/bin/busybox|'); \
	$(MKINITRAMFS) --init $(AGENT) --add /bin/busybox:bin/busybox:0755 $$links -o $(TEST_INITRAMFS)

guest: kernel initramfs initramfs-test

aci: guest
	ci/build-aci.sh $(STAGE1_STATIC) $(KERNEL) $(INITRAMFS) $(ACI)

MINIRKT       := target/release/minirkt
DEMO_DIR      := $(CURDIR)/target/demo

# A pod in a VM, driven as rkt drives a stage1: minirkt (our rkt-compatible stage0) runs a
# busybox app image with the stage1-kvm image; the app's output and exit code are shown.
demo: aci minirkt
	@echo "== 1. the guest agent alone in a micro-VM (2 vCPUs, 512 MiB) =="
	$(STAGE1) vm --kernel $(KERNEL) --initramfs $(INITRAMFS) --cpus 2 --mem 512
	@echo "== 2. a pod: minirkt run --stage1-path=$(ACI) hello.aci =="
	@findmnt -rn -o TARGET | grep "^$(DEMO_DIR)/" | sort -r | xargs -r umount 2>/dev/null || true
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)/hello/rootfs/bin
	@install -m 0755 /bin/busybox $(DEMO_DIR)/hello/rootfs/bin/busybox
	@ln -s busybox $(DEMO_DIR)/hello/rootfs/bin/sh
	@printf '%s\n' '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hello",' \
	  '"labels":[{"name":"version","value":"1.0"},{"name":"arch","value":"amd64"},{"name":"os","value":"linux"}],' \
	  '"app":{"exec":["/bin/sh","-c","echo Hello from a pod in a VM; uname -sr; exit 7"],"user":"0","group":"0"}}' \
	  > $(DEMO_DIR)/hello/manifest
	@$(MINIRKT) image build $(DEMO_DIR)/hello -o $(DEMO_DIR)/hello.aci
	@set +e; $(MINIRKT) --dir $(DEMO_DIR)/data run --net=none --stage1-path=$(ACI) $(DEMO_DIR)/hello.aci; \
	  echo "== the pod exited with $$? (the app's exit code) =="
	@$(MINIRKT) --dir $(DEMO_DIR)/data gc --grace-period=0s >/dev/null 2>&1; \
	  $(MINIRKT) --dir $(DEMO_DIR)/data gc --grace-period=0s >/dev/null 2>&1 || true

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p stage1-kvm-e2e --test kvm_linux_boot -- -D warnings
	ci/check-duplicate-crates.sh

unit: deps
	$(CARGO) test --workspace --exclude stage1-kvm-e2e

# End-to-end tests boot the real kernel and agent; they find them through these variables
# and fail (never skip) when one is missing.
E2E_ENV := STAGE1_KVM_BIN=$(CURDIR)/$(STAGE1) STAGE1_KVM_KERNEL=$(CURDIR)/$(KERNEL) \
           STAGE1_KVM_INITRAMFS=$(CURDIR)/$(INITRAMFS) STAGE1_KVM_AGENT=$(CURDIR)/$(AGENT) \
           STAGE1_KVM_TEST_INITRAMFS=$(CURDIR)/$(TEST_INITRAMFS) \
           STAGE1_KVM_ACI=$(CURDIR)/$(ACI) STAGE1_KVM_MINIRKT=$(CURDIR)/$(MINIRKT)

# The kvm engine boots the real kernel only with hardware virtualization; PVM's /dev/kvm
# runs the test guest (kvm_boot) but not Linux. Elsewhere that test is listed as not run,
# never counted as passed.
HW_VIRT := $(shell grep -qE 'vmx|svm' /proc/cpuinfo && echo yes)
KVM_LINUX_NOT_RUN := NOT RUN: kvm engine real-kernel boot (no hardware virtualization: /dev/kvm is PVM)

e2e: build guest aci minirkt
	$(E2E_ENV) $(CARGO) test -p stage1-kvm-e2e -- --test-threads=2
ifeq ($(HW_VIRT),yes)
	$(E2E_ENV) $(CARGO) test -p stage1-kvm-e2e --test kvm_linux_boot
else
	@echo "$(KVM_LINUX_NOT_RUN)"
endif

test: lint unit e2e
ifeq ($(HW_VIRT),yes)
	@echo "make test: all checks passed"
else
	@echo "make test: every check that ran passed; $(KVM_LINUX_NOT_RUN)"
endif

# The benchmarks' peers (runc, QEMU's virtiofsd) come from ci/install-bench-deps.sh; the pod
# benchmark also needs the stage1 image and minirkt. `make bench BENCHES="bench-exec bench-fs"`
# runs only those.
BENCH_ENV := $(E2E_ENV) STAGE1_KVM_ACI=$(CURDIR)/$(ACI) STAGE1_KVM_MINIRKT=$(CURDIR)/$(MINIRKT)

bench: build guest aci minirkt
	@ci/install-bench-deps.sh
	$(BENCH_ENV) ci/bench.sh $(BENCHES)

clean:
	$(CARGO) clean
