"""``python -m fe_dist.launch``: horovodrun's command line without TensorFlow's start-up lines
(see fe_dist/distributed/horovodrun.py)."""
