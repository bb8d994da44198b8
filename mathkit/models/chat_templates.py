"""Chat templates for models whose tokenizer ships without one (a base model's GGUF).

Each is a Jinja template for ``tokenizer.apply_chat_template``, written to reproduce the format
the model family's instruct variant was trained with, so a fine-tune here uses the same turns as
the same fine-tune on a GPU with the hub's instruct model.
"""

# Gemma 3's turn format, text only. Gemma has no system role: like Gemma's own template, a system
# message becomes the first user turn's opening paragraph. The assistant's role is "model".
GEMMA3_TURNS = (
    r"{{ bos_token }}"
    r"{%- if messages and messages[0]['role'] == 'system' -%}"
    r"{%- set first_user_prefix = messages[0]['content'] | trim ~ '\n\n' -%}"
    r"{%- set loop_messages = messages[1:] -%}"
    r"{%- else -%}"
    r"{%- set first_user_prefix = '' -%}"
    r"{%- set loop_messages = messages -%}"
    r"{%- endif -%}"
    r"{%- for message in loop_messages -%}"
    r"{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    r"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    r"{%- endif -%}"
    r"{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    r"{{ '<start_of_turn>' ~ role ~ '\n' ~ (first_user_prefix if loop.first else '') }}"
    r"{{ message['content'] | trim }}"
    r"{{ '<end_of_turn>\n' }}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}"
    r"{{ '<start_of_turn>model\n' }}"
    r"{%- endif -%}"
)
