"""Distribution names a sampler config may use, shipped as fixed tables.

``NUMPY_DISTRIBUTIONS`` are ``numpy.random.Generator`` methods; :data:`SCIPY_DISTRIBUTIONS` are the
``scipy.stats`` distributions with their shape parameters (taken from scipy 1.17). Config validation
reads only these tables, never scipy itself, so one config is valid or invalid on every machine
whether or not scipy is installed. Parameter *values* a scipy distribution rejects (``a=-1`` for
beta) are checked before a run starts, where scipy is needed anyway (``sampling.batch``).
"""

from __future__ import annotations

# Distribution names that mean a ``numpy.random.Generator`` method. Any other name is looked up in
# ``scipy.stats``. Fixed on purpose: a name must mean the same draw whether or not scipy is installed.
NUMPY_DISTRIBUTIONS = frozenset({
    "beta", "binomial", "chisquare", "exponential", "f", "gamma", "geometric", "gumbel",
    "hypergeometric", "laplace", "logistic", "lognormal", "logseries", "negative_binomial",
    "noncentral_chisquare", "noncentral_f", "normal", "pareto", "poisson", "power", "rayleigh",
    "standard_cauchy", "standard_exponential", "standard_gamma", "standard_normal", "standard_t",
    "triangular", "uniform", "vonmises", "wald", "weibull", "zipf",
})
SCIPY_HINT = "install it with: pip install 'gristmill[scipy]'"

# name -> shape parameters; every continuous one also takes loc and scale.
SCIPY_CONTINUOUS: dict[str, tuple[str, ...]] = {
    "alpha": ('a',),
    "anglit": (),
    "arcsine": (),
    "argus": ('chi',),
    "beta": ('a', 'b'),
    "betaprime": ('a', 'b'),
    "bradford": ('c',),
    "burr": ('c', 'd'),
    "burr12": ('c', 'd'),
    "cauchy": (),
    "chi": ('df',),
    "chi2": ('df',),
    "cosine": (),
    "crystalball": ('beta', 'm'),
    "dgamma": ('a',),
    "dpareto_lognorm": ('u', 's', 'a', 'b'),
    "dweibull": ('c',),
    "erlang": ('a',),
    "expon": (),
    "exponnorm": ('K',),
    "exponpow": ('b',),
    "exponweib": ('a', 'c'),
    "f": ('dfn', 'dfd'),
    "fatiguelife": ('c',),
    "fisk": ('c',),
    "foldcauchy": ('c',),
    "foldnorm": ('c',),
    "gamma": ('a',),
    "gausshyper": ('a', 'b', 'c', 'z'),
    "genexpon": ('a', 'b', 'c'),
    "genextreme": ('c',),
    "gengamma": ('a', 'c'),
    "genhalflogistic": ('c',),
    "genhyperbolic": ('p', 'a', 'b'),
    "geninvgauss": ('p', 'b'),
    "genlogistic": ('c',),
    "gennorm": ('beta',),
    "genpareto": ('c',),
    "gibrat": (),
    "gompertz": ('c',),
    "gumbel_l": (),
    "gumbel_r": (),
    "halfcauchy": (),
    "halfgennorm": ('beta',),
    "halflogistic": (),
    "halfnorm": (),
    "hypsecant": (),
    "invgamma": ('a',),
    "invgauss": ('mu',),
    "invweibull": ('c',),
    "irwinhall": ('n',),
    "jf_skew_t": ('a', 'b'),
    "johnsonsb": ('a', 'b'),
    "johnsonsu": ('a', 'b'),
    "kappa3": ('a',),
    "kappa4": ('h', 'k'),
    "ksone": ('n',),
    "kstwo": ('n',),
    "kstwobign": (),
    "landau": (),
    "laplace": (),
    "laplace_asymmetric": ('kappa',),
    "levy": (),
    "levy_l": (),
    "loggamma": ('c',),
    "logistic": (),
    "loglaplace": ('c',),
    "lognorm": ('s',),
    "loguniform": ('a', 'b'),
    "lomax": ('c',),
    "maxwell": (),
    "mielke": ('k', 's'),
    "moyal": (),
    "nakagami": ('nu',),
    "ncf": ('dfn', 'dfd', 'nc'),
    "nct": ('df', 'nc'),
    "ncx2": ('df', 'nc'),
    "norm": (),
    "norminvgauss": ('a', 'b'),
    "pareto": ('b',),
    "pearson3": ('skew',),
    "powerlaw": ('a',),
    "powerlognorm": ('c', 's'),
    "powernorm": ('c',),
    "rayleigh": (),
    "rdist": ('c',),
    "recipinvgauss": ('mu',),
    "reciprocal": ('a', 'b'),
    "rel_breitwigner": ('rho',),
    "rice": ('b',),
    "semicircular": (),
    "skewcauchy": ('a',),
    "skewnorm": ('a',),
    "studentized_range": ('k', 'df'),
    "t": ('df',),
    "trapezoid": ('c', 'd'),
    "triang": ('c',),
    "truncexpon": ('b',),
    "truncnorm": ('a', 'b'),
    "truncpareto": ('b', 'c'),
    "truncweibull_min": ('c', 'a', 'b'),
    "tukeylambda": ('lam',),
    "uniform": (),
    "vonmises": ('kappa',),
    "vonmises_line": ('kappa',),
    "wald": (),
    "weibull_max": ('c',),
    "weibull_min": ('c',),
    "wrapcauchy": ('c',),
}

# name -> shape parameters; every discrete one also takes loc.
SCIPY_DISCRETE: dict[str, tuple[str, ...]] = {
    "bernoulli": ('p',),
    "betabinom": ('n', 'a', 'b'),
    "betanbinom": ('n', 'a', 'b'),
    "binom": ('n', 'p'),
    "boltzmann": ('lambda_', 'N'),
    "dlaplace": ('a',),
    "geom": ('p',),
    "hypergeom": ('M', 'n', 'N'),
    "logser": ('p',),
    "nbinom": ('n', 'p'),
    "nchypergeom_fisher": ('M', 'n', 'N', 'odds'),
    "nchypergeom_wallenius": ('M', 'n', 'N', 'odds'),
    "nhypergeom": ('M', 'n', 'r'),
    "planck": ('lambda_',),
    "poisson": ('mu',),
    "poisson_binom": ('p',),
    "randint": ('low', 'high'),
    "skellam": ('mu1', 'mu2'),
    "yulesimon": ('alpha',),
    "zipf": ('a',),
    "zipfian": ('a', 'n'),
}

SCIPY_DISTRIBUTIONS = frozenset(SCIPY_CONTINUOUS) | frozenset(SCIPY_DISCRETE)


def scipy_parameters(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required shape parameters, optional parameters) of a scipy.stats distribution in our table."""
    if name in SCIPY_CONTINUOUS:
        return SCIPY_CONTINUOUS[name], ("loc", "scale")
    return SCIPY_DISCRETE[name], ("loc",)


def check_scipy_distribution(name: str, params: dict[str, float]) -> None:
    """Check a scipy.stats name and its parameter names against the shipped table; ValueError if wrong.

    Works the same with or without scipy installed; values are checked before a run (needs scipy).
    """
    if name not in SCIPY_DISTRIBUTIONS:
        raise ValueError(f"unknown scipy.stats distribution {name!r} (e.g. norm, beta, lognorm, poisson)")
    shapes, optional = scipy_parameters(name)
    unknown = sorted(set(params) - set(shapes) - set(optional))
    missing = [shape for shape in shapes if shape not in params]
    if unknown or missing:
        takes = ", ".join((*shapes, *optional))
        problem = f"unknown parameter(s) {unknown}" if unknown else f"missing shape parameter(s) {missing}"
        raise ValueError(f"scipy distribution {name!r} rejects dist_params {params}: {problem} (it takes {takes})")


def check_distribution(name: str, params: dict[str, float]) -> None:
    """Fail at config time when a numpy distribution rejects these params, or a scipy name or
    parameter name is unknown (scipy parameter values are checked before the run)."""
    if name not in NUMPY_DISTRIBUTIONS:
        check_scipy_distribution(name, params)
        return
    import numpy as np

    try:
        getattr(np.random.default_rng(0), name)(**params, size=2)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"numpy distribution {name!r} rejects dist_params {params}: {exc}") from exc
