"""The public surface: what ``import probgen`` gives, and what it does not import."""

import subprocess
import sys

import probgen


def test_all_names_resolve():
    for name in probgen.__all__:
        assert getattr(probgen, name) is not None, name


def test_import_does_not_import_pyro_or_scipy():
    code = "import sys, probgen; print(sorted({'pyro', 'scipy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_names_come_from_their_modules():
    from probgen.checks import check_kl
    from probgen.elbo import elbo_terms
    from probgen.vae import VAE

    assert probgen.elbo_terms is elbo_terms and probgen.VAE is VAE
    assert probgen.check_kl is check_kl
