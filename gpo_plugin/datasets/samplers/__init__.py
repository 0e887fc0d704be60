from .class_disjoint_sampler import ClassDisjointSampler

__all__ = ['ClassDisjointSampler']
