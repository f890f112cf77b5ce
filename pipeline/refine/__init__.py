"""Per-frame refinement: class mapping, croppers, acceptance policy, FrameRefiner and its one builder, the public Refiner."""
