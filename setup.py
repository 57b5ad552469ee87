"""The store's C kernels (bgit/store/kernels.py); everything else about the package is in
pyproject.toml. Optional: where no C compiler works the build skips the extension and bgit
runs the same loops in numpy (the same results; a commit spends 20–30% more CPU)."""

from setuptools import Extension, setup

KERNELS = Extension(
    "bgit.store._kernels",
    sources=["bgit/store/_kernels.c"],
    # -ffp-contract=off: no fused multiply-add, so the norms round as numpy's do (the
    # manifests record them).
    extra_compile_args=["-O3", "-ffp-contract=off"],
    optional=True,
)

if __name__ == "__main__":
    setup(ext_modules=[KERNELS])
