"""The asset-key vocabulary of the graph: one function per kind of asset, so a key reads like the
domain (`meta_returns_<meta>_<risk>`) and every layer spells it the same way.

Pure strings, no imports: the Dagster layer names its assets with these, and `explain` and the CLI
find the stored partitions of an asset by the same names.
"""


# fmt: off
def candidates_name(universe: str) -> str: return f"candidates_{universe}"
def prices_name(universe: str) -> str: return f"prices_{universe}"
def returns_name(universe: str) -> str: return f"returns_{universe}"
def features_name(universe: str) -> str: return f"features_{universe}"
def regime_name(universe: str) -> str: return f"regime_{universe}"
def clusters_name(sleeve: str) -> str: return f"clusters_{sleeve}"
def cluster_sensitivity_name(sleeve: str) -> str: return f"cluster_sensitivity_{sleeve}"
def rankings_name(sleeve: str) -> str: return f"rankings_{sleeve}"
def vetoes_name(sleeve: str) -> str: return f"vetoes_{sleeve}"
def selection_name(sleeve: str) -> str: return f"selection_{sleeve}"
def sleeve_weights_name(sleeve: str, risk: str) -> str: return f"sleeve_weights_{sleeve}_{risk}"
def sleeve_returns_name(sleeve: str, risk: str) -> str: return f"sleeve_returns_{sleeve}_{risk}"
def meta_returns_name(meta: str, risk: str) -> str: return f"meta_returns_{meta}_{risk}"
def meta_weights_name(meta: str, risk: str) -> str: return f"meta_weights_{meta}_{risk}"
def meta_tree_name(meta: str, risk: str) -> str: return f"meta_cluster_tree_{meta}_{risk}"
def meta_portfolio_returns_name(meta: str, risk: str) -> str: return f"meta_portfolio_returns_{meta}_{risk}"
def flattened_name(meta: str, risk: str) -> str: return f"flattened_weights_{meta}_{risk}"
def report_name(meta: str, risk: str) -> str: return f"meta_report_{meta}_{risk}"
def tournament_name(sleeve: str) -> str: return f"tournament_{sleeve}"
def orders_name(meta: str, risk: str) -> str: return f"rebalance_orders_{meta}_{risk}"
def implemented_name(meta: str, risk: str) -> str: return f"implemented_weights_{meta}_{risk}"
# fmt: on
