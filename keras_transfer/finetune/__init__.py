"""How a pretrained model learns a new task: freezing, phases, schedules, caching, weight transfer."""
