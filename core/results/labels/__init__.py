"""Are the labels right: suspected label errors from out-of-sample probabilities, how far that ranking holds
(the self-test), overlapping classes and label health, and what fixing labels would be worth."""
