"""Names vulture (`make lint`) cannot see used: only notebooks, the README or a library call them.

Never imported or run; vulture reads it with course_utils/ and scripts/. Add a name here only when its use is
outside the Python files vulture reads, and say where. tests/test_vulture_whitelist.py checks that every name
here is still defined.
"""
# ruff: noqa: B018, F821

# Python's own hooks: the lazy exports of course_utils/__init__.py.
__getattr__
__dir__

# Exported lazily (course_utils._EXPORTS) and called only from the lessons.
add_commit
record_revisions
set_base_model
adapter_playground
assert_single_device
bench_table
expect_error
lesson1_adapter
library_messages
linear_module_names
load_bin_adapter_weights
merge_to_folder
placement_report
quiz
rank_explorer
setup_notebook
tensor_table
versions_summary
your_turn

# Called from the setup cells of lessons 7 and 9 (course_utils.load_reports, not a lazy export).
shorten_repeated_reports

# Called from the exercises' given cells.
adapter_task
blocked_adapter
broken_copy
broken_folder
classifier_task
colleague_adapter
colleague_share
combo_task
compiled_run
deploy_adapter
entity_colleague
four_bit_base
gguf_adapter
given_adapter
half_dtype
learner_batch
learner_sentence
llama_task
mark_base
memory_budget
renamed_colleague
serving_model
teammate_model
teammate_state
teammate_update
zero3_teammate
trainer_run
try_loading
tutorial_config
two_adapters

# Read by the lessons and the widget tests: the playground's controls by name.
controls

# Set for a library, which reads it: IPython (_render_traceback_), nbformat (execution_count), nbclient
# (on_notebook_start), warnings (formatwarning).
_render_traceback_
execution_count
on_notebook_start
formatwarning

# A field of the grader's result, written to its JSON (dataclasses.asdict).
isolation

# A maintainer's command in the README (running the lessons on the full-size GPT-2).
full_size_gpt2_folder
