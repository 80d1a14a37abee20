"""nnzoo: learning on neural-network weights (metanetworks), built on Lightning.

Networks are graphs: :mod:`nnzoo.graphs` turns weights into computation graphs,
:mod:`nnzoo.data` loads or builds weight datasets, :mod:`nnzoo.models` holds the
metanetworks (registered by name) and :mod:`nnzoo.tasks` the LightningModules.
"""

__version__ = "0.1.0"
