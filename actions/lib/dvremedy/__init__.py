"""dangling_volume's logic and transports, shared by the pack's actions (on st2's action path as
actions/lib). Never imports st2: the actions are the only st2 glue."""
