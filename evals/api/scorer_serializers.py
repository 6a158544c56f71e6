from rest_framework import serializers


class ScorerSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="What an experiment's `scorers` name it by.")
    description = serializers.CharField(help_text="What it scores, and its options.")
    default_threshold = serializers.FloatField(
        help_text="A score passes at this value or above, unless a spec sets one."
    )
