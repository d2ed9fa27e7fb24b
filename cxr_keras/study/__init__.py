"""The blinded real/fake reader study (Table 1 of the paper) and its automatic judge.

``build`` draws and anonymises the image set, ``app`` serves it to readers, ``db`` stores their
answers, ``score`` writes Table 1 and ``judge`` replaces human readers by a small classifier.
Only ``judge`` (and reading RECORDS in ``build``) imports TensorFlow, so the web app starts fast.
"""
