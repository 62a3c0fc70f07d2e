// Whether a chat template reads a message's content as a list of parts or as a string, found
// once from the template's syntax as vLLM finds it (chat_utils' _detect_content_format): the
// template is given the "openai" format, a list of {"type": "text", "text": ...} parts, where it
// loops over the content of a message it loops over ({% for part in message['content'] %},
// message.content too, and a slice, filter or test of either), the messages being the variable
// messages or any it is set to ({% set loop_messages = messages[1:] %}, and so on, set after set);
// otherwise the "string" format. Only a loop with one target and a {% set %} of one name count,
// as vLLM reads only those.

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    static class ContentFormat
    {
        public static bool IteratesMessageContent(List<(string Target, Access Iterable)> loops, List<(string Name, Access Value)> assignments)
        {
            // The names that hold the messages or some of them, following {% set %}s from messages.
            var messages = new HashSet<string>(StringComparer.Ordinal) { "messages" };
            for (var grew = true; grew;)
            {
                grew = false;
                foreach (var (name, value) in assignments)
                    if (value.Key is null && messages.Contains(value.Variable)) grew |= messages.Add(name);
            }
            var message = loops.Where(l => l.Iterable.Key is null && messages.Contains(l.Iterable.Variable)).Select(l => l.Target).ToHashSet(StringComparer.Ordinal);
            return loops.Any(l => l.Iterable.Key == "content" && message.Contains(l.Iterable.Variable));
        }
    }
}
