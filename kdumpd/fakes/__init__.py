"""kdumpd's test doubles of the machine, in one place: a sysfs/proc tree under a root
(:mod:`.fakesysfs`), the kernel's kexec and crash-hotplug behaviour over it
(:mod:`.fakekernel`), a faithful /proc/kcore of the loaded image (:mod:`.fakekcore`) and
the one virtual clock (:mod:`.clock`). They serve the unit tests, ``--dry-run`` and
``kdumpd demo``, and model what the kernel does; the real kernel is in tests/vm.

The fakes of kdumpd's own seams stay beside what they stand in for, as httpx keeps its
MockTransport beside the transports: ``backends.fake.FakeBackend``, ``source.FakeSource``,
``kernel_log.FakeKernelLog``, ``state.MemoryStore``.
"""
