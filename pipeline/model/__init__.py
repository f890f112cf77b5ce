"""The refiner network, its ImageNet weights, model files (one spec reader for every kind), export and the committed defaults."""
