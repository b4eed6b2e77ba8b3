"""After training: a finished run loaded once, its model in one classifier wrapper, and what is done with it
(predict, evaluate, export). The console scripts and cnntrain.results.Run call these functions."""
