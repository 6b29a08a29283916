"""Attention maps as plain numpy data (:mod:`attnviz.maps.data`) and what is computed from them
without a model: the views a picture shows, windows, rollout, the explanation of one head,
and the memory they take."""
