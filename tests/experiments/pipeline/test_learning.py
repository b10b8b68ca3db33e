"""The report's "Did fine-tuning learn?" section and the llmtime-base note, from results.json records."""

from __future__ import annotations

from experiments.pipeline.learning import base_note, learning_section


def methods(**median_mse: tuple[float, float]) -> list[dict]:
    """Records with these median MSEs (prey, predator); the mean MSE is twice the median."""
    return [{"method": name.replace("__", "-"), "malformed_fraction": 0.25 if "unconstrained" in name else 0.0,
             "species": {"prey": {"mse": {"median": prey, "mean": 2 * prey}},
                         "predator": {"mse": {"median": predator, "mean": 2 * predator}}}}
            for name, (prey, predator) in median_mse.items()]


BASELINE = {"kind": "baseline", "methods": methods(llm__greedy=(4.0, 3.0), llm__greedy__unconstrained=(9.0, 9.0))}
EVALUATE = {"kind": "evaluate", "experiment": "final", "base_validation": {"cross_entropy_nats": 1.2, "windows": 24,
                                                                          "context": 512},
            "validation": {"cross_entropy_nats": 0.9},
            "methods": methods(llm__greedy=(0.5, 2.5), llm__greedy__unconstrained=(1.0, 1.0), persistence=(1.0, 2.0),
                               linear_extrapolation=(3.0, 3.0), physics_fit=(0.1, 0.2))}


def test_the_section_sets_base_and_adapter_side_by_side_and_checks_the_goals():
    text = learning_section({"baseline": BASELINE, "evaluate": EVALUATE})
    lines = text.splitlines()
    assert lines[0] == "## Did fine-tuning learn?"
    assert ("untrained base **1.2000**, fine-tuned adapter of run `final` **0.9000** (-0.3000; perplexity "
            "3.320 -> 2.460)") in text  # neither the adapter's step nor its validation's recorded
    assert not any(line.startswith("|") for line in lines)  # the errors are tabled once, in the comparison table
    assert "the comparison table at the top of this report" in text
    assert "on 25.0% of the test trajectories with the untrained base and on 25.0% with the fine-tuned" in text
    assert "- fine-tuning lowers the validation loss: **met** (1.2000 -> 0.9000)" in lines
    assert "- fine-tuned greedy median MSE below persistence for prey: **met** (0.5 vs 1)" in lines
    assert "- fine-tuned greedy median MSE below persistence for predator: **NOT met** (2.5 vs 2)" in lines


def test_the_section_says_how_much_the_untrained_base_already_meets_and_where_the_mean_got_worse():
    baseline = {**BASELINE, "methods": methods(llm__greedy=(0.8, 2.0))}  # prey already below persistence's 1.0
    lines = learning_section({"baseline": baseline, "evaluate": EVALUATE}).splitlines()
    assert lines[lines.index("What the goals leave out:") + 1:] == [
        "- prey: the untrained base's greedy median MSE is already below persistence's (0.8 vs 1); fine-tuning "
        "changes it by -37.5% (to 0.5); mean MSE 1.6 -> 1",
        "- predator: the untrained base's greedy median MSE is not below persistence's (2 vs 2); fine-tuning changes "
        "it by +25.0% (to 2.5); mean MSE 4 -> 5 (worse)",
    ]


def test_the_share_of_trajectories_beating_persistence_is_counted_where_both_have_an_error():
    evaluate = {**EVALUATE, "methods": [
        {**record, "ids": [3, 5, 7, 9], "species": {
            name: {**record["species"][name], "per_trajectory": {"mse": errors[name]}} for name in record["species"]}}
        for record, errors in zip(EVALUATE["methods"], [
            {"prey": [0.1, 0.5, None, 2.0], "predator": [1.0, 1.0, 1.0, 1.0]},  # llm-greedy
            {"prey": [0.0, 0.0, 0.0, 0.0], "predator": [0.0, 0.0, 0.0, 0.0]},  # unconstrained: not compared
            {"prey": [0.2, 0.4, 0.1, 1.0], "predator": [2.0, 0.5, 2.0, float("nan")]}])]  # persistence
                + EVALUATE["methods"][3:]}
    text = learning_section({"baseline": BASELINE, "evaluate": evaluate})
    assert "; the fine-tuned forecast beats persistence on 1 of 3 trajectories" in text.splitlines()[-2]  # prey
    assert text.splitlines()[-1].endswith("beats persistence on 2 of 3 trajectories")  # predator


def test_the_adapter_loss_names_the_adapter_step_and_the_step_of_its_validation():
    evaluate = {**EVALUATE, "adapter_step": 40, "planned_steps": 40,
                "validation": {"cross_entropy_nats": 0.9, "step": 30}}
    text = learning_section({"baseline": BASELINE, "evaluate": evaluate})
    assert ("fine-tuned adapter (run `final`, step 40 of 40) **0.9000** (validation at step 30; -0.3000; "
            "perplexity 3.320 -> 2.460)") in text


def test_no_section_without_a_finished_evaluate_stage_and_no_note_without_a_base():
    assert learning_section({"baseline": BASELINE}) == ""
    assert learning_section({"evaluate": {"kind": "evaluate"}}) == ""
    assert base_note({}) == [] and base_note({"base": None}) == []
    note = base_note({"base": {"steps": 800, "tokens": 1_600_000, "sequences": 4000, "flops": 3.2e15, "corpus": "general sequences",
                               "directory": "bases/llmtime-base", "recipe_hash": "abc123",
                               "losses": {"final_validation": 0.61234}}})
    assert note[0] == "" and "800 steps (1,600,000 tokens)" in note[1] and "4,000 general sequences" in note[1]
    assert "validation loss on held-out sequences of the same families 0.6123" in note[1]
    assert "`bases/llmtime-base/ledger.sqlite`, recipe abc123" in note[1]
    assert "share one output row" in note[1] and "malformed rate says less" in note[1]
