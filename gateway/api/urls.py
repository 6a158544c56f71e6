from django.urls import path

from gateway.api.views import ChatCompletionsView, ModelListView

urlpatterns = [
    path("chat/completions", ChatCompletionsView.as_view(), name="gateway-chat-completions"),
    path("models", ModelListView.as_view(), name="gateway-models"),
]
