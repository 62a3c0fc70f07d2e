// Chat templates as the model families ship them, rendered by Stratus's Jinja subset, compared
// with what transformers' apply_chat_template produces for the same conversation.
using Stratus.Tokenization;

namespace Stratus.Tests;

public sealed class ChatTemplateTests
{
    internal const string ChatMl = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    const string Llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    const string Llama2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    const string Mistral = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    const string Zephyr = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

    static readonly (string, string)[] Conversation = [("system", "Be brief."), ("user", "Hi!"), ("assistant", "Hello."), ("user", "Name a color.")];

    [Fact]
    public void ChatML_renders_with_a_generation_prompt()
    {
        var text = new ChatTemplate(ChatMl).Render(Conversation, addGenerationPrompt: true);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n", text);
    }

    [Fact]
    public void Llama3_renders_headers_trimmed_content_and_bos_once()
    {
        var text = new ChatTemplate(Llama3, "<|begin_of_text|>", "<|eot_id|>").Render([("user", " Hi! "), ("assistant", "Hello.")], addGenerationPrompt: true);
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public void Llama2_folds_the_system_prompt_into_the_first_instruction()
    {
        var text = new ChatTemplate(Llama2, "<s>", "</s>").Render(Conversation, addGenerationPrompt: false);
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] Name a color. [/INST]", text);
    }

    [Fact]
    public void Mistral_raises_the_templates_own_error_on_a_system_message()
    {
        var template = new ChatTemplate(Mistral, "<s>", "</s>");
        Assert.Equal("<s>[INST] Hi! [/INST]Hello.</s>[INST] Name a color. [/INST]", template.Render(Conversation[1..], addGenerationPrompt: false));
        var error = Assert.Throws<StratusUserException>(() => template.Render(Conversation, addGenerationPrompt: false));
        Assert.Contains("Conversation roles must alternate", error.Message);
    }

    [Fact]
    public void Zephyr_relies_on_trim_blocks_for_its_newlines()
    {
        var text = new ChatTemplate(Zephyr, "<s>", "</s>").Render(Conversation[..2], addGenerationPrompt: true);
        Assert.Equal("<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n", text);
    }

    [Fact]
    public void Namespaces_loops_filters_and_whitespace_control_work()
    {
        const string source = "{%- set ns = namespace(found=false) -%}\n{%- for m in messages if m.role != 'system' -%}\n  {%- if m.role == 'user' %}{% set ns.found = true %}{% endif -%}\n  [{{ loop.index }}/{{ loop.length }}:{{ m['content'] | upper }}]\n{%- endfor -%}\n{{ ns.found }} {{ messages | length }} {{ (messages | last).content[:3] }} {{ 7 // 2 }} {{ 'x' if undefined_name is not defined else 'y' }} {{ ['a', 'b'] | join('-') }}";
        var text = new ChatTemplate(source).Render(Conversation, addGenerationPrompt: false);
        Assert.Equal("[1/3:HI!][2/3:HELLO.][3/3:NAME A COLOR.]True 4 Nam 3 x a-b", text);
    }

    [Theory]
    [InlineData("{% macro greet(name) %}hi{% endmacro %}", "macro")]
    [InlineData("{{ messages | map(attribute='content') }}", "map")]
    [InlineData("{% for m in messages %}", "endfor")]
    public void An_unsupported_template_is_refused_clearly(string source, string named)
    {
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(source));
        Assert.StartsWith("the chat template cannot be used", error.Message);
        Assert.Contains(named, error.Message);
    }
}
