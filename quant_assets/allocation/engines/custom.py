"""The custom engine: numpy/scipy (+ cvxpy/CLARABEL for the two QPs). Implements every profile and
every RiskConfig option, which is why it is the product's default engine.

* hrp: the numpy kernel (engines/hrp.py), same weights as skfolio to ~1e-16, ~10-40x faster.
* min_variance / max_sharpe: cvxpy with CLARABEL on a covariance normalised to unit mean variance
  (Clarabel's tolerances are absolute; daily variances ~1e-4 sit right at them), then an exact
  active-set polish: on the solver's support the KKT system is solved directly and kept only if it
  is feasible and optimal, so golden values are reproducible to ~1e-12 instead of solver tolerance.
  max_sharpe uses the Cornuejols-Tütüncü transform min y'Sy s.t. mu'y = 1, y >= 0, w = y / sum(y),
  and refuses (raises) when no expected return beats the zero risk-free rate.
* risk_parity: equal risk contribution by cyclical coordinate descent on
  min 0.5 x'Sx - sum(b_i log x_i) (+ lambda c'x), each coordinate a closed-form quadratic root
  (Griveau-Billion, Richard & Roncalli 2013); w = x / sum(x). No solver, deterministic.
* CVaR fragility penalty (config.cvar_penalty = lambda > 0): adds lambda * sum(w_i c_i) with
  c_i = |CVaR_i| / mean|CVaR| and the risk term normalised to unit mean variance, so lambda is
  unit-free; for max_sharpe the expected return is reduced by lambda * mean|mu| * c_i instead.
* Cluster caps and the market-neutral beta bound are constraints of the min_variance / max_sharpe
  problems (CLARABEL; the projection of an unconstrained optimum onto the caps is not the
  constrained optimum: in a measured case it had ~3 % more volatility). Profiles without a solver
  (hrp, risk_parity, equal_weight) are projected onto the caps afterwards; provenance says which
  (`cluster_cap_method`).
* equal_weight / market / benchmark / raw_pool_ew / barbell: see engines/base.py.
"""

from __future__ import annotations

import numpy as np

from quant_assets.allocation.engines.base import (
    Engine,
    EngineOutput,
    EngineRequest,
    barbell,
    equal_weight,
    hierarchical_equal_weight_array,
)
from quant_assets.allocation.engines.hrp import hrp_weights

ERC_TOL = 1e-13
ERC_MAX_SWEEPS = 20_000


def _normalised(cov: np.ndarray) -> np.ndarray:
    scale = float(np.mean(np.diag(cov)))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("covariance has no positive variance")
    return cov / scale


def _factor(S: np.ndarray) -> np.ndarray:
    """F with F'F = S (eigenvalues clipped at 0): convex for cvxpy even when n > T makes S singular."""
    lam, V = np.linalg.eigh(S)
    return np.sqrt(np.clip(lam, 0.0, None))[:, None] * V.T


def _penalty(request: EngineRequest) -> np.ndarray:
    lam = request.config.cvar_penalty
    if lam <= 0:
        return np.zeros(request.n)
    c = request.cvar()
    return lam * c / c.mean() if c.mean() > 0 else np.zeros(request.n)


def active_set_qp(S: np.ndarray, linear: np.ndarray, equality: np.ndarray, max_iter: int = 500) -> np.ndarray | None:
    """min x'Sx + linear'x  s.t. equality'x = 1, x >= 0, by a primal active-set method (numpy only).

    For the small dense problems here (n <= a few dozen) it ends in a handful of iterations at the
    exact KKT point, in microseconds: about 100x faster than building and solving the problem with
    cvxpy/CLARABEL on every rebalance date. Returns None when it cannot (singular sub-system, no
    feasible start, no convergence), and the caller solves with CLARABEL instead.
    """
    n = len(equality)
    a = np.asarray(equality, dtype=float)
    if n == 0 or not (a > 0).any():
        return None
    x = np.zeros(n)
    if (a > 0).all():
        x[:] = 1.0 / a.sum()
    else:
        k = int(np.argmax(a))
        x[k] = 1.0 / a[k]
    free = x > 0
    scale = max(1.0, float(np.abs(np.diag(S)).max()))
    for _ in range(max_iter):
        F = np.flatnonzero(free)
        try:
            A = np.linalg.solve(S[np.ix_(F, F)], a[F])
            B = np.linalg.solve(S[np.ix_(F, F)], linear[F]) / 2.0
        except np.linalg.LinAlgError:
            return None
        denom = a[F] @ A
        if not np.isfinite(denom) or abs(denom) < 1e-300:
            return None
        t = (1.0 + a[F] @ B) / denom
        target = t * A - B
        if (target >= 0).all():
            x = np.zeros(n)
            x[F] = target
            off = np.flatnonzero(~free)
            if len(off) == 0:
                return x
            lam = (2.0 * S[off] @ x + linear[off]) - 2.0 * t * a[off]  # bound multipliers of the zeros
            j = int(np.argmin(lam))
            if lam[j] >= -1e-12 * scale * max(1.0, abs(t)):
                return x
            free[off[j]] = True
        else:
            step = target - x[F]
            shrinking = step < 0
            ratios = x[F][shrinking] / -step[shrinking]
            alpha = min(1.0, float(ratios.min()))
            x[F] = x[F] + alpha * step
            blocking = F[shrinking][int(np.argmin(ratios))]
            x[blocking] = 0.0
            free[blocking] = False
            x[(x < 0) & free] = 0.0
    return None


def _solve_qp(S: np.ndarray, linear: np.ndarray, equality: np.ndarray) -> np.ndarray:
    """min x'Sx + linear'x  s.t. equality'x = 1, x >= 0: the active-set method, CLARABEL (on a factor
    of S) when it cannot decide."""
    x = active_set_qp(S, linear, equality)
    return x if x is not None else _clarabel_qp(_factor(S), linear, equality)


def _clarabel_qp(F: np.ndarray, linear: np.ndarray, equality: np.ndarray) -> np.ndarray:
    """min |F x|^2 + linear'x  s.t. equality'x = 1, x >= 0 (CLARABEL)."""
    import cvxpy as cp

    x = cp.Variable(F.shape[1], nonneg=True)
    objective = cp.sum_squares(F @ x) + (linear @ x if linear.any() else 0)
    problem = cp.Problem(cp.Minimize(objective), [equality @ x == 1])
    problem.solve(solver="CLARABEL")
    if problem.status not in ("optimal", "optimal_inaccurate") or x.value is None:
        raise ValueError(f"CLARABEL status {problem.status}")
    return np.clip(np.asarray(x.value, dtype=float), 0.0, None)


def _polish(S: np.ndarray, rhs: np.ndarray, x: np.ndarray, linear: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Exact KKT solution on the solver's support: S_SS x_S = rhs_S * t (- linear/2), scaled to the
    constraint; returned only if it is non-negative and no excluded asset would improve the objective."""
    support = x > tol * x.max()
    idx = np.flatnonzero(support)
    try:
        S_ss = S[np.ix_(idx, idx)]
        a = np.linalg.solve(S_ss, rhs[idx])
        b = np.linalg.solve(S_ss, linear[idx]) / 2.0
    except np.linalg.LinAlgError:
        return x
    # x_S = t * a - b with rhs'x = 1  ->  t = (1 + rhs_S'b) / rhs_S'a
    denom = rhs[idx] @ a
    if abs(denom) < 1e-300:
        return x
    t = (1.0 + rhs[idx] @ b) / denom
    cand = np.zeros_like(x)
    cand[idx] = t * a - b
    if (cand[idx] <= 0).any():
        return x
    grad = 2.0 * S @ cand + linear  # KKT: grad_j >= t_mult * rhs_j off the support
    mult = 2.0 * t
    off = ~support
    if off.any() and (grad[off] - mult * rhs[off] < -1e-9 * max(1.0, abs(mult))).any():
        return x
    return cand


def weight_constraints(request: EngineRequest) -> tuple[np.ndarray, np.ndarray, dict]:
    """Linear constraints A w <= b on weights summing to 1, from the options that need a solver:
    cluster caps (each cluster's total <= max(cap, 1/n_clusters)) and the market-neutral bound
    (|w . beta| <= bound). Returns A, b and what they are, for the provenance."""
    cfg = request.config
    rows: list[np.ndarray] = []
    bounds: list[float] = []
    notes: dict[str, float | str] = {}
    if cfg.cluster_caps_enabled:
        labels = request.labels()
        uniq = np.unique(labels)
        eff = max(getattr(cfg.cluster_caps, request.regime), 1.0 / len(uniq))
        for label in uniq:
            rows.append((labels == label).astype(float))
            bounds.append(eff)
        notes.update(cluster_cap=eff, cluster_cap_method="constraint")
    if cfg.market_neutral:
        beta, bound = request.betas(), request.beta_bound()
        if (beta > bound).all() or (beta < -bound).all():  # a long-only mix of them cannot get inside
            raise ValueError(
                f"market neutral infeasible: every asset's beta is beyond +/-{bound} (betas "
                f"{beta.min():.2f} .. {beta.max():.2f}) and weights are long-only"
            )
        rows += [beta, -beta]
        bounds += [bound, bound]
        notes.update(beta_bound=bound)
    return np.array(rows).reshape(len(rows), request.n), np.array(bounds, dtype=float), notes


def _clarabel_constrained(
    F: np.ndarray, linear: np.ndarray, equality: np.ndarray, A: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """min |F x|^2 + linear'x  s.t. equality'x = 1, A x <= b, x >= 0 (CLARABEL); raises when infeasible."""
    import cvxpy as cp

    x = cp.Variable(F.shape[1], nonneg=True)
    objective = cp.sum_squares(F @ x) + (linear @ x if linear.any() else 0)
    problem = cp.Problem(cp.Minimize(objective), [equality @ x == 1, A @ x <= b])
    problem.solve(solver="CLARABEL")
    if problem.status not in ("optimal", "optimal_inaccurate") or x.value is None:
        raise ValueError(f"constraints infeasible or unsolved (CLARABEL status {problem.status})")
    return np.clip(np.asarray(x.value, dtype=float), 0.0, None)


def min_variance(request: EngineRequest) -> EngineOutput:
    S = _normalised(request.cov())
    lin = _penalty(request)
    ones = np.ones(request.n)
    A, b, notes = weight_constraints(request)
    if len(b):  # the constrained optimum, not a projection of the unconstrained one
        x = _clarabel_constrained(_factor(S), lin, ones, A, b)
        return EngineOutput(
            x / x.sum(), {"variant": "long-only min variance, constrained", "solver": "CLARABEL", **notes}
        )
    x = _polish(S, ones, _solve_qp(S, lin, ones), lin)
    return EngineOutput(x / x.sum(), {"variant": "long-only min variance", "solver": "CLARABEL+kkt-polish"})


def max_sharpe(request: EngineRequest) -> EngineOutput:
    mu = request.mu().copy()
    lam = request.config.cvar_penalty
    if lam > 0:
        c = request.cvar()
        mu = mu - lam * np.abs(mu).mean() * (c / c.mean())
    if not (mu > 0).any():
        raise ValueError(
            "max_sharpe: no asset has an expected return above the risk-free rate 0 (every Sharpe ratio <= 0)"
        )
    S = _normalised(request.cov())
    mu_s = mu / np.abs(mu).max()
    zero = np.zeros(request.n)
    A, b, notes = weight_constraints(request)
    if len(b):  # a'w <= b with w = y / sum(y) is (a - b 1)'y <= 0: still linear in y
        y = _clarabel_constrained(_factor(S), zero, mu_s, A - b[:, None], np.zeros(len(b)))
        if y.sum() <= 0:
            raise ValueError("max_sharpe: degenerate solution")
        return EngineOutput(
            y / y.sum(),
            {"variant": "long-only max Sharpe (rf=0, transform), constrained", "solver": "CLARABEL", **notes},
        )
    y = _polish(S, mu_s, _solve_qp(S, zero, mu_s), zero)
    if y.sum() <= 0:
        raise ValueError("max_sharpe: degenerate solution")
    return EngineOutput(
        y / y.sum(), {"variant": "long-only max Sharpe (rf=0, transform)", "solver": "CLARABEL+kkt-polish"}
    )


def erc(cov: np.ndarray, penalty: np.ndarray | None = None) -> np.ndarray:
    """Equal-risk-contribution weights by cyclical coordinate descent (raises if it does not converge)."""
    S = _normalised(cov)
    n = S.shape[0]
    d = np.diag(S).copy()
    b = np.full(n, 1.0 / n)
    pen = np.zeros(n) if penalty is None else penalty
    x = 1.0 / np.sqrt(d)
    x /= x.sum()
    for _ in range(ERC_MAX_SWEEPS):
        x_old = x.copy()
        for i in range(n):
            c = S[i] @ x - d[i] * x[i] + pen[i]
            x[i] = (-c + np.sqrt(c * c + 4.0 * d[i] * b[i])) / (2.0 * d[i])
        if np.abs(x - x_old).max() <= ERC_TOL * x.max():
            return x / x.sum()
        if not np.isfinite(x).all():
            break
    raise ValueError("risk_parity: coordinate descent did not converge")


class CustomEngine(Engine):
    name = "custom"
    profiles = frozenset(
        {
            "market",
            "benchmark",
            "raw_pool_ew",
            "equal_weight",
            "min_variance",
            "hrp",
            "max_sharpe",
            "risk_parity",
            "barbell",
        }
    )

    def hrp(self, request: EngineRequest) -> EngineOutput:
        cfg = request.config
        w = hrp_weights(request.cov(), cfg.hrp_linkage, cfg.hrp_leaf_order, cfg.hrp_distance)
        return EngineOutput(w, {"variant": cfg.hrp_variant, "solver": "numpy-hrp-kernel"})

    def run(self, request: EngineRequest) -> EngineOutput:
        p = request.profile
        if p == "hrp":
            return self.hrp(request)
        if p == "min_variance":
            return min_variance(request)
        if p == "max_sharpe":
            return max_sharpe(request)
        if p == "risk_parity":
            w = erc(request.cov(), _penalty(request) if request.config.cvar_penalty > 0 else None)
            return EngineOutput(w, {"variant": "erc", "solver": "cyclical-coordinate-descent"})
        if p == "barbell":
            return barbell(request, self.hrp)
        if p in ("market", "benchmark", "raw_pool_ew"):
            return EngineOutput(equal_weight(request.n), {"variant": "1/n", "solver": "none"})
        if p == "equal_weight":
            cfg = request.config
            var = request.X.var(axis=0, ddof=1) if request.X.shape[0] > 1 else np.ones(request.n)
            share = cfg.hybrid_momentum_share if cfg.hybrid_intra_weighting else 0.0
            mom = request.momentum
            if share > 0 and mom is None:
                mom = np.prod(1.0 + request.X, axis=0) - 1.0
            w = hierarchical_equal_weight_array(var, request.clusters, mom, share)
            return EngineOutput(w, {"variant": "hybrid" if share > 0 else "inverse-variance", "solver": "none"})
        raise self.unsupported(p)
