"""Generic contextual meta-RL on Gymnasium environments (belief encoders, policies, learners).

It knows nothing of dialogue: it sees Gymnasium spaces, a task sampler and an ``info`` dict.
"""
