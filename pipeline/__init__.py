"""BBRefinement-RT: refine an object detector's boxes in real time (Hurtik et al., ICLR 2021 submission)."""

__version__ = "0.1.0"
